"""numpy/scipy reference of the consensus kernels (to be written)."""

__all__: list[str] = []
