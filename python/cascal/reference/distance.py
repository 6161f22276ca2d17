"""numpy/scipy reference of the distance kernels (to be written)."""

__all__: list[str] = []
