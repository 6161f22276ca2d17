"""numpy/scipy reference of the linkage kernels (to be written)."""

__all__: list[str] = []
