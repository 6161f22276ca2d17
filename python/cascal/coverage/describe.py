"""``cascal coverage --describe``: a generator model names and describes each uncovered cluster.

One request per cluster (:func:`cascal.generation.describe.build_describe_messages` over its
examples) through the ``openai`` client of :class:`cascal.llm.client.ChatClient`, every reply
committed to a SQLite response cache first (:class:`cascal.llm.cache.ResponseCache`, as
``cascal generate`` does), so a repeated run asks nothing again. The reply's name becomes the
cluster's subject name and its description the draft's description; a cluster whose request fails
keeps its quoted-examples draft. Clusters the generator gives the same name describe one subject and
are merged into one (:func:`merge_same_named`), so a refresh generates for that subject once; a name
that is one of the router's own subjects is suffixed (``law_2``), since a refresh must add a subject,
not rename one.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Optional

import numpy as np

from cascal.coverage.analysis import Cluster, CoverageReport
from cascal.errors import ConfigError, ReplyWarning
from cascal.generation.describe import build_describe_messages, parse_description
from cascal.io.files import PathLike
from cascal.llm.config import ModelConfig, RetryPolicy

__all__ = ["describe_clusters", "merge_same_named"]


async def _adescribe(
    report: CoverageReport, generator: ModelConfig, retry: Optional[RetryPolicy], cache_path: PathLike
) -> int:
    from cascal.llm.cache import ResponseCache
    from cascal.llm.client import ChatClient, RequestFailed

    router_subjects = {str(s["subject"]) for s in report.subjects}
    taken = set(router_subjects)
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
            while unique in router_subjects:
                unique, k = f"{name}_{k}", k + 1
            cluster.name = unique
        taken.add(cluster.name)
    report.clusters = merge_same_named(report.clusters, report.settings.examples)
    return described


def merge_same_named(clusters: list[Cluster], examples: int) -> list[Cluster]:
    """``clusters`` with every group of the same name merged into one, largest first.

    A merged cluster adds up the sizes, samples, shares and routed-subject counts of its parts; its
    mean fallback weight and centre are the sample-weighted means; its examples alternate between the
    parts (at most ``examples``, nearest the centre first within each part) and its ids are all the
    parts' ids; the description is its largest part's. Its nearest subject and distances are those
    of the part nearest a router subject (the router is not at hand here to measure the merged
    centre again), so they are the distances of the closest part, not of the union.
    """
    groups: dict[str, list[Cluster]] = {}
    for c in clusters:
        groups.setdefault(c.name, []).append(c)
    merged = [parts[0] if len(parts) == 1 else _merge(parts, examples) for parts in groups.values()]
    merged.sort(key=lambda c: (-c.size, c.subject_distance))
    return merged


def _merge(parts: list[Cluster], examples: int) -> Cluster:
    parts = sorted(parts, key=lambda c: -c.size)
    nearest = min(parts, key=lambda c: c.subject_distance)
    sampled = sum(c.sampled for c in parts)
    weights = np.array([c.sampled for c in parts], dtype=np.float64) / max(sampled, 1)
    routed: dict[str, int] = {}
    for c in parts:
        for subject, count in c.routed_subjects.items():
            routed[subject] = routed.get(subject, 0) + count
    alternating = [
        c.examples[i] for i in range(max(len(c.examples) for c in parts)) for c in parts if i < len(c.examples)
    ]
    centroid = None
    if all(c.centroid is not None for c in parts):
        mean = sum(w * np.asarray(c.centroid, dtype=np.float64) for w, c in zip(weights, parts))
        norm = float(np.linalg.norm(mean))
        centroid = mean / norm if norm > 0 else mean
    return Cluster(
        name=parts[0].name,
        size=sum(c.size for c in parts),
        sampled=sampled,
        share=sum(c.share for c in parts),
        nearest_subject=nearest.nearest_subject,
        subject_distance=nearest.subject_distance,
        niche_distance=min(c.niche_distance for c in parts),
        mean_fallback_weight=round(float(sum(w * c.mean_fallback_weight for w, c in zip(weights, parts))), 6),
        routed_subjects=dict(sorted(routed.items(), key=lambda kv: -kv[1])),
        examples=alternating[:examples],
        ids=[i for c in parts for i in c.ids],
        description=parts[0].description,
        centroid=centroid,
    )


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
