"""numpy/scipy reference of the routing kernels (to be written)."""

__all__: list[str] = []
