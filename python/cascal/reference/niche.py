"""numpy/scipy reference of the niche kernels (to be written)."""

__all__: list[str] = []
