"""Running cascal on Ray, for work that outgrows one machine (the optional extra ``cascal[ray]``).

- :func:`route_dataset`: route a ``ray.data.Dataset`` of query embeddings or texts with Ray Data
  ``map_batches``; every worker loads the router file once (:class:`RouteBatches`).
- :func:`route_parquet_ray`: ``cascal route-batch --engine ray``, the same output file as the
  single-process :func:`cascal.pipeline.route_batch.route_parquet`.
- :mod:`cascal.distributed.serve`: ``cascal serve --ray``, the gateway as autoscaled Ray Serve replicas.

Ray is imported inside the functions, never by ``import cascal`` or by importing this package.
See ``docs/distributed.md``.
"""

from __future__ import annotations

from cascal.distributed.data import RouteBatches, route_dataset, route_parquet_ray

__all__ = ["RouteBatches", "route_dataset", "route_parquet_ray"]
