"""``cascal coverage --describe``: a generator model names and describes each uncovered cluster.

One request per cluster (:func:`cascal.generation.describe.build_describe_messages` over its
examples) through the ``openai`` client of :class:`cascal.llm.client.ChatClient`, every reply
committed to a SQLite response cache first (:class:`cascal.llm.cache.ResponseCache`, as
``cascal generate`` does), so a repeated run asks nothing again. The reply's name becomes the
cluster's subject name (made unique, and never one of the router's subjects) and its description
the draft's description; a cluster whose request fails keeps its quoted-examples draft.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Optional

from cascal.coverage.analysis import CoverageReport
from cascal.errors import ConfigError, ReplyWarning
from cascal.generation.describe import build_describe_messages, parse_description
from cascal.io.files import PathLike
from cascal.llm.config import ModelConfig, RetryPolicy

__all__ = ["describe_clusters"]


async def _adescribe(
    report: CoverageReport, generator: ModelConfig, retry: Optional[RetryPolicy], cache_path: PathLike
) -> int:
    from cascal.llm.cache import ResponseCache
    from cascal.llm.client import ChatClient, RequestFailed

    taken = {str(s["subject"]) for s in report.subjects}
    described = 0
    with ResponseCache(cache_path) as cache:
        client = ChatClient(generator, retry, cache=cache)
        try:
            asks = [build_describe_messages(c.examples, avoid_names=sorted(taken)) for c in report.clusters]
            replies = await asyncio.gather(*(client.complete(m) for m in asks), return_exceptions=True)
        finally:
            await client.aclose()
    for cluster, reply in zip(report.clusters, replies):
        if isinstance(reply, RequestFailed):
            warnings.warn(f"{cluster.name}: no description from {generator.name} ({reply})", ReplyWarning, 2)
            continue
        if isinstance(reply, BaseException):
            raise reply
        name, description = parse_description(reply.text)
        if description:
            cluster.description = description
            described += 1
        if name:
            unique, k = name, 2
            while unique in taken:
                unique, k = f"{name}_{k}", k + 1
            cluster.name = unique
        taken.add(cluster.name)
    return described


def describe_clusters(
    report: CoverageReport,
    generator: ModelConfig,
    *,
    cache_path: PathLike,
    retry: Optional[RetryPolicy] = None,
) -> int:
    """Replace each cluster's draft name and description in ``report`` by ``generator``'s; returns
    how many clusters were described.

    Raises:
        ConfigError: a cluster has no example text (the log was written without ``--log-text``).
        cascal.errors.EndpointError: the generator is unreachable or refuses the requests.
    """
    bare = [c.name for c in report.clusters if not c.examples]
    if bare:
        raise ConfigError(
            f"--describe: cluster(s) {bare} have no example text; the gateway must log with --log-text "
            "for a generator to describe its traffic"
        )
    if not report.clusters:
        return 0
    return asyncio.run(_adescribe(report, generator, retry, cache_path))
