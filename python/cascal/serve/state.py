"""What a gateway serves with, as one immutable object: :class:`ServingState` (router, pool,
upstreams, the router file's hash), and :func:`load_state`, which reads and checks one.

A request takes the gateway's state once when it starts and uses it to its end; a reload builds a
new state beside the running one and swaps the reference (:meth:`cascal.serve.gateway.Gateway.reload`).
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from cascal.errors import ConfigError, EmbeddingError, InvalidParameterError, RouterFileError
from cascal.serve.metrics import GatewayMetrics
from cascal.serve.routing import LoadedRouter
from cascal.serve.settings import ROUTED_MODEL, VOTE_PREFIX, GatewaySettings
from cascal.serve.upstream import UpstreamPool

__all__ = ["ServingState", "check_embedder", "file_sha256", "load_state", "self_test"]

logger = logging.getLogger("cascal.serve")

PathLike = Union[str, Path]


@dataclass(frozen=True, eq=False)
class ServingState:
    """One router and one pool as a gateway serves them (never changed once built).

    Attributes:
        routing: the router, as the routing engine takes it.
        upstreams: a client and a circuit breaker per pool model.
        sha256: SHA-256 of the router file's bytes (of the router saved to a file, for a router given
            in memory): what ``/health``, ``/metrics``, ``x-cascal-router`` and the decision log name.
        loaded_at: Unix time the state was built.
        router_path, pool_path: the files it was read from (``None``: given in memory).
        dropped: models of the router file that the pool lacks, dropped from routing with
            :meth:`cascal.CascalRouter.without_models` (only a reload drops; startup refuses).
        self_test_error: why routing a probe failed (:func:`self_test`), or ``None``.
    """

    routing: LoadedRouter
    upstreams: UpstreamPool
    sha256: str
    loaded_at: float
    router_path: Optional[str] = None
    pool_path: Optional[str] = None
    dropped: tuple[str, ...] = ()
    self_test_error: Optional[str] = None

    @property
    def router(self) -> Any:
        """The fitted router."""
        return self.routing.router

    @property
    def loaded_at_iso(self) -> str:
        """:attr:`loaded_at` in UTC, ISO 8601."""
        moment = datetime.datetime.fromtimestamp(self.loaded_at, datetime.timezone.utc)
        return moment.isoformat(timespec="milliseconds")

    def describe(self) -> dict[str, Any]:
        """The JSON ``/health`` and ``/admin/reload`` give of this state."""
        return {
            "sha256": self.sha256,
            "file": self.router_path,
            "loaded_at": self.loaded_at_iso,
            "models": list(self.routing.model_names),
            "dropped": list(self.dropped),
        }


def file_sha256(data: bytes) -> str:
    """The hex SHA-256 of a router file's bytes."""
    return hashlib.sha256(data).hexdigest()


def check_embedder(
    recorded: str, given: str, *, recorded_hash: Optional[str] = None, given_hash: Optional[str] = None
) -> None:
    """Refuse an embedder other than the router's (:func:`cascal.embedding.check_embedder_identity`):
    a router that records its embedder's files hash accepts exactly the embedders with that hash,
    whatever their name; otherwise names must match, except that an ``openai:`` endpoint embedder
    may be reached at another URL as long as the model is the same.

    Raises:
        EmbeddingError: the embedders differ (the message names both).
    """
    from cascal.embedding import check_embedder_identity

    check_embedder_identity(recorded, recorded_hash, given, given_hash)


def self_test(router: Any) -> Optional[str]:
    """Route one probe vector (the router's first subject representative) through ``router``;
    ``None`` when it routes, else the reason it failed.

    A router whose tables load but cannot route (values the kernel refuses) would otherwise look
    healthy while every request fails.
    """
    import numpy as np

    try:
        probe = np.asarray(router.tables_.subject_reps[:1], dtype=np.float64)
        router.route(probe)
    except Exception as exc:  # noqa: BLE001 - any failure makes the router unfit to serve
        return f"routing self-test failed: {type(exc).__name__}: {exc}"
    return None


def _read_router(path: PathLike) -> tuple[Any, str]:
    """The router saved at ``path`` and the SHA-256 of the bytes it was loaded from.

    Raises:
        RouterFileError: the file cannot be read, or changed while it was being loaded.
    """
    from cascal.pipeline.route import load_router

    try:
        before = Path(path).read_bytes()
    except OSError as exc:
        raise RouterFileError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    router = load_router(path)
    try:
        after = Path(path).read_bytes()
    except OSError as exc:
        raise RouterFileError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if before != after:
        raise RouterFileError(f"{path}: the file changed while it was being loaded; load it again")
    return router, file_sha256(before)


def _router_sha256(router: Any) -> str:
    """The SHA-256 a router given in memory would have as a file (saved to a temporary one)."""
    with tempfile.TemporaryDirectory(prefix="cascal-router-") as folder:
        path = Path(folder) / "router.cascal"
        router.save(path)
        return file_sha256(path.read_bytes())


def load_state(
    router: Any,
    pool: Any,
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    *,
    embedder_name: Optional[str],
    embedder_hash: Optional[str] = None,
    previous: Optional[ServingState] = None,
) -> ServingState:
    """Read and check a router (a path or a fitted router) and a pool (a path or a
    :class:`~cascal.llm.config.PoolConfig`) into a :class:`ServingState`.

    The router must record the embedder ``embedder_name`` (``None``: any; with its files hash
    ``embedder_hash`` when the router records one, see :func:`check_embedder`). Without ``previous``
    (startup) the pool must serve every model the router routes to. With it (a reload) the router
    must record the same embedder as ``embedder_name``, the one serving; the
    routed models the pool lacks are dropped (:meth:`cascal.CascalRouter.without_models`, logged),
    the router must still route a probe, and the upstreams of models that stay keep their circuit
    breakers (:class:`~cascal.serve.upstream.UpstreamPool`, ``previous``).

    Raises:
        cascal.errors.RouterFileError: the router file cannot be read.
        cascal.errors.EmbeddingError: the router records no embedder, or another one.
        cascal.errors.ConfigError: the pool cannot be read, lacks a routed model (startup) or every
            one (reload), uses a reserved name, an ``api_key_env`` variable is not set, or the
            router fails its routing self-test (reload).
        cascal.errors.InvalidParameterError: ``top_k`` exceeds the models routed to.
    """
    from cascal.llm.config import load_pool

    router_path = pool_path = None
    if isinstance(router, (str, Path)):
        router_path = str(router)
        router, sha256 = _read_router(router)
    else:
        sha256 = _router_sha256(router)
    recorded = getattr(router, "embedding_model", None)
    if not recorded:
        raise EmbeddingError("the router records no embedder; retrain it with `cascal train`")
    hashes = {"recorded_hash": getattr(router, "embedding_sha256", None), "given_hash": embedder_hash}
    if previous is not None and embedder_name is not None:
        try:
            check_embedder(recorded, embedder_name, **hashes)
        except EmbeddingError:
            raise EmbeddingError(
                f"{router_path or 'router'}: embedder {recorded!r} differs from the serving router's "
                f"embedder {embedder_name!r}: a reload cannot change the embedder; restart the gateway"
            ) from None
    elif embedder_name is not None:
        check_embedder(recorded, embedder_name, **hashes)
    if isinstance(pool, (str, Path)):
        pool_path = str(pool)
        pool = load_pool(pool)
    source = pool.source or "pool"
    reserved = [n for n in pool.names if n == ROUTED_MODEL or n.startswith(VOTE_PREFIX)]
    if reserved:
        raise ConfigError(f"{source}: model name(s) {reserved} are reserved by the gateway")
    missing = [m for m in router.model_names_ if m not in pool.names]
    if missing and previous is None:
        raise ConfigError(f"{source}: no entry for routed model(s) {missing}; the pool has {pool.names}")
    if missing:
        if len(missing) == len(router.model_names_):
            raise ConfigError(
                f"{source}: none of the router's models {list(router.model_names_)} is in the pool {pool.names}"
            )
        router = router.without_models(missing)
        logger.warning("reload: %s lacks %s: dropped from routing (without_models)", source, missing)
    if settings.top_k > len(router.model_names_):
        raise InvalidParameterError(
            f"top_k: must be at most the pool size {len(router.model_names_)}, got {settings.top_k}"
        )
    for model in pool.models:
        model.api_key()  # ConfigError naming the model and the variable when it is unset
    failure = self_test(router)
    if failure is not None and previous is not None:
        raise ConfigError(f"{router_path or 'router'}: {failure}")
    upstreams = UpstreamPool(
        pool,
        metrics,
        breaker_failures=settings.breaker_failures,
        breaker_cooldown=settings.breaker_cooldown,
        secrets=[settings.api_key],
        previous=previous.upstreams if previous is not None else None,
    )
    return ServingState(
        routing=LoadedRouter(router),
        upstreams=upstreams,
        sha256=sha256,
        loaded_at=time.time(),
        router_path=router_path,
        pool_path=pool_path,
        dropped=tuple(missing),
        self_test_error=failure,
    )
