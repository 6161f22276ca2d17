"""Benchmark case modules; each registers its cases with :func:`cascal.bench.register`."""
