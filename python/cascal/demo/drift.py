"""``cascal demo --drift``: traffic drifts to topics the tasks never named; a label-free refresh follows it.

On the simulator (every step the real library function, over HTTP):

1. **train** a router on the first ``n_old`` subjects of the simulated catalogue: generate, answer,
   embed, filter, train (the router a deployment would serve);
2. **traffic**: held-out questions from those subjects *and* from ``n_new`` further subjects the
   tasks never named (a third of the queries with the defaults); the simulated pool has niche
   specialists there too. The oracle generator writes them, so their key is the simulator's hidden
   truth. They are routed by a real gateway (:func:`cascal.serve.server.build_gateway` over uvicorn,
   ``POST /v1/route``) serving the router, logging as ``cascal serve --log-decisions --log-text
   --log-embeddings`` does;
3. **coverage** (:func:`cascal.coverage.analyse_coverage`, as ``cascal coverage --describe``):
   clusters the uncovered traffic of the decision log and has the simulator's generator describe
   each cluster from its examples; the ``tasks.yaml`` draft it writes names the new subjects —
   nothing of the simulator's catalogue is handed to the refresh;
4. **refresh** (:func:`cascal.pipeline.refresh.refresh_router`) with that ``tasks.yaml`` and the
   decision log for the shadow check (read by the decision-log reader, checked against the router's
   hash), writing the router file the gateway serves, then ``POST /admin/reload``
   (:func:`cascal.pipeline.reload.reload_gateway`);
5. **measure** with the true answers the routing accuracy of the gateway's rankings before and
   after the reload (top-1: the first model's answer; top-3: the vote of the three ranked models)
   on the old subjects' traffic and on the new subjects' traffic.

The results (``drift.json``) hold both accuracies per group, the coverage clusters and the tasks
they drafted, the requests the refresh paid, the reload and the shadow check.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from cascal.demo.runner import ANSWER_CACHE, EMBEDDER, GENERATION_CACHE, _fresh_folder, _key_accuracy
from cascal.errors import InvalidParameterError

PathLike = Union[str, Path]

__all__ = ["DriftConfig", "run_drift", "format_drift_table"]

DECISION_LOG = "decisions.jsonl"
COVERAGE_DIR = "coverage"
SERVED_POOL = "pool.yaml"


@dataclass(frozen=True)
class DriftConfig:
    """Sizes of the drift experiment.

    Attributes:
        n_old: subjects the original tasks name (the first ones of the simulated catalogue).
        n_new: further subjects only the traffic has (the refresh's tasks).
        n_train: generated questions per subject, for the original training set and for the refresh.
        n_traffic: traffic queries per subject (true key known).
        generator: the generator strength (``weak``, ``medium``, ``strong``).
        seed: the simulated world's seed (also the router's clustering seed).
        concurrency: requests in flight per pool model.
    """

    n_old: int = 4
    n_new: int = 2
    n_train: int = 90
    n_traffic: int = 60
    generator: str = "strong"
    seed: int = 0
    concurrency: int = 8

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0) -> "DriftConfig":
        """The default sizes, or the ``quick`` ones (2 old subjects, 1 new, fewer questions)."""
        if quick:
            return cls(n_old=2, n_new=1, n_train=60, n_traffic=40, seed=seed)
        return cls(seed=seed)

    def __post_init__(self) -> None:
        from cascal.simulate import SUBJECTS

        if self.n_old < 1 or self.n_new < 1 or self.n_old + self.n_new > len(SUBJECTS):
            raise InvalidParameterError(
                f"n_old, n_new: need >= 1 each and at most {len(SUBJECTS)} subjects together, got {self.n_old} + {self.n_new}"
            )
        for name in ("n_train", "n_traffic", "concurrency"):
            if getattr(self, name) < 1:
                raise InvalidParameterError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.generator not in ("weak", "medium", "strong"):
            raise InvalidParameterError(f"generator: weak, medium or strong, got {self.generator!r}")


def _tasks(subjects: Any, n: int) -> Any:
    from cascal.llm.config import TasksConfig

    return TasksConfig(subjects={s.key: s.description for s in subjects}, questions={s.key: n for s in subjects})


def _answer_and_embed(folder: Path, pool: Any, cache: Path, config: DriftConfig, progress: bool) -> Any:
    """Answer and embed a generated dataset folder; return it with its embeddings."""
    from cascal.io import load_dataset
    from cascal.pipeline.answer import answer_dataset
    from cascal.pipeline.embed import embed_dataset

    answer_dataset(folder, pool, cache_path=cache, progress=progress, concurrency=config.concurrency)
    embed_dataset(folder, EMBEDDER, progress=False)
    return load_dataset(folder, embeddings=EMBEDDER)


def _served_rankings(http: Any, texts: list[str], names: list[str]) -> tuple[np.ndarray, str]:
    """The gateway's top-3 rankings of ``texts`` (``POST /v1/route`` in slices) as column indices of
    ``names``, and the router hash the gateway answered with."""
    column = {name: i for i, name in enumerate(names)}
    ranked: list[list[int]] = []
    served = ""
    for start in range(0, len(texts), 500):
        response = http.post("/v1/route", json={"input": texts[start : start + 500]})
        if response.status_code != 200:
            from cascal.serve.errors import GatewayError

            raise GatewayError(f"the drift experiment's /v1/route failed: {response.status_code} {response.text}")
        answer = response.json()
        served = answer["router_sha256"]
        ranked += [[column[m] for m in item["models"][:3]] for item in answer["data"]]
    return np.asarray(ranked, dtype=np.int64), served


def _accuracy(router: Any, ranked: np.ndarray, traffic: Any, rows: np.ndarray) -> dict[str, float]:
    """Top-1 and top-3-vote accuracy of the rankings ``ranked`` on the traffic ``rows`` (true key;
    vote ties broken as the evaluation harness breaks them for ``router``)."""
    from cascal.evaluation.metrics import ensemble_accuracy

    part = traffic.subset(rows)
    gold, confidence = np.asarray(part.gold), router.tie_break_confidence(part)
    top1 = ensemble_accuracy(ranked[rows][:, :1], part.answers, gold, confidence)
    top3 = ensemble_accuracy(ranked[rows], part.answers, gold, confidence)
    return {"top1": top1, "top3": top3}


def _coverage(log: Path, router_file: Path, out: Path, generator: Any, config: DriftConfig) -> Any:
    """``cascal coverage LOG --router R --describe``: the uncovered clusters, described by
    ``generator``, and their ``tasks.yaml`` draft in ``out``."""
    from cascal.coverage import CoverageSettings, analyse_coverage
    from cascal.coverage.describe import describe_clusters
    from cascal.coverage.outputs import write_outputs

    # the size floor: a quarter of one new subject's traffic (stray queries of the old subjects stay below it)
    settings = CoverageSettings(min_size=max(5, config.n_traffic // 4), seed=config.seed)
    report = analyse_coverage(log, router_file, settings=settings)
    out.mkdir(parents=True, exist_ok=True)
    describe_clusters(report, generator, cache_path=out / "describe_cache.sqlite")
    write_outputs(report, out, questions=config.n_train)
    return report


def _references(traffic: Any, rows: np.ndarray) -> dict[str, float]:
    """Best single model (by true accuracy on these rows) and the oracle, top-1."""
    from cascal.evaluation.metrics import model_accuracy, oracle_accuracy

    part = traffic.subset(rows)
    gold = np.asarray(part.gold)
    return {
        "best_single": float(model_accuracy(part.answers, gold).max()),
        "oracle": float(oracle_accuracy(part.answers, gold)),
    }


def run_drift(out_dir: PathLike, config: DriftConfig, *, progress: bool = True) -> dict:
    """Run the drift experiment (module docstring) in ``out_dir``; returns what ``drift.json`` holds,
    plus ``"table"`` (the printed table)."""
    import secrets
    import shutil

    import httpx

    from cascal.coverage.outputs import TASKS_FILE
    from cascal.io.decision_embeddings import default_sidecar
    from cascal.io.decision_log import file_sha256
    from cascal.io.queries import read_queries
    from cascal.llm.config import load_tasks
    from cascal.pipeline.filter import filter_dataset
    from cascal.pipeline.generate import generate_dataset
    from cascal.pipeline.refresh import refresh_router, router_in_use
    from cascal.pipeline.reload import reload_gateway
    from cascal.pipeline.train import train_router
    from cascal.serve.server import GatewayThread, build_gateway
    from cascal.serve.settings import GatewaySettings
    from cascal.simulate import SUBJECTS, SimWorld, serve_simulator, simulator_pool
    from cascal.simulate.server import pool_yaml, simulator_generator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old_subjects = SUBJECTS[: config.n_old]
    new_subjects = SUBJECTS[config.n_old : config.n_old + config.n_new]
    world = SimWorld(seed=config.seed)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def stage(name: str) -> None:
        if progress:
            print(f"[drift] {name} ...", flush=True)

    with serve_simulator(world) as server:
        pool = simulator_pool(server.base_url, world, max_concurrency=config.concurrency)
        generator = simulator_generator(server.base_url, f"sim-generator-{config.generator}")

        stage(f"train on {', '.join(s.key for s in old_subjects)}")
        raw_dir = generate_dataset(
            _tasks(old_subjects, config.n_train),
            generator,
            _fresh_folder(out / "train"),
            cache_path=out / GENERATION_CACHE,
            progress=progress,
        )
        _answer_and_embed(raw_dir, pool, out / ANSWER_CACHE, config, progress)
        dataset_dir = _fresh_folder(out / "train_filtered")
        filter_dataset(raw_dir, dataset_dir)
        router_file = out / "router.cascal"
        train_router(dataset_dir, router_file, embeddings=EMBEDDER, random_state=config.seed)
        timings["train"] = round(time.perf_counter() - start, 2)

        stage(f"traffic: {config.n_traffic} queries per subject, new subjects {', '.join(s.key for s in new_subjects)}")
        traffic_dir = generate_dataset(
            _tasks((*old_subjects, *new_subjects), config.n_traffic),
            simulator_generator(server.base_url, "sim-generator-oracle"),
            _fresh_folder(out / "traffic"),
            cache_path=out / GENERATION_CACHE,
            progress=progress,
        )
        traffic = _answer_and_embed(traffic_dir, pool, out / ANSWER_CACHE, config, progress)
        texts, names = list(traffic.questions or []), list(traffic.model_names)
        served_pool = out / SERVED_POOL
        served_pool.write_text(pool_yaml(server.base_url, world), encoding="utf-8")
        log_file = out / DECISION_LOG
        log_file.unlink(missing_ok=True)
        shutil.rmtree(default_sidecar(log_file), ignore_errors=True)
        key = secrets.token_urlsafe(16)
        settings = GatewaySettings(
            port=0, api_key=key, top_k=3, log_decisions=str(log_file), log_text=True, log_embeddings=True
        )
        gateway = build_gateway(router_file, served_pool, settings)
        with (
            GatewayThread(gateway) as thread,
            httpx.Client(base_url=thread.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http,
        ):
            stage(f"traffic through the gateway at {thread.url} (decision log {log_file.name}, texts and embeddings)")
            before, served_before = _served_rankings(http, texts, names)
            assert gateway.decision_log is not None
            gateway.decision_log.flush()  # coverage reads the log while the gateway runs
            timings["traffic"] = round(time.perf_counter() - start, 2)

            stage("coverage: cluster the uncovered traffic, the generator describes each cluster")
            coverage = _coverage(log_file, router_file, out / COVERAGE_DIR, generator, config)
            tasks_file = out / COVERAGE_DIR / TASKS_FILE
            timings["coverage"] = round(time.perf_counter() - start, 2)

            stage(f"refresh with {tasks_file}")
            work = out / "refresh"
            if work.exists():
                shutil.rmtree(work)  # the caches live beside it, in out/: a rerun replays them for free
            sent_before = len(server.request_log)
            routed_by = router_in_use(router_file, dataset_dir, work)
            refreshed = refresh_router(
                dataset_dir,
                router_file,
                load_tasks(tasks_file),
                generator,
                pool,
                work_dir=work,
                queries=read_queries(log_file, router_sha256=file_sha256(routed_by), router_name=str(routed_by)).texts,
                queries_source=str(log_file),
                n_per_subject=config.n_train,
                concurrency=config.concurrency,
                progress=progress,
            )
            refresh_requests = len(server.request_log) - sent_before
            reloaded = reload_gateway(thread.url, key)
            stage(f"reloaded the gateway: router {str(reloaded.get('router_sha256'))[:12]}")
            after, served_after = _served_rankings(http, texts, names)
        timings["total"] = round(time.perf_counter() - start, 2)

    new_names = {s.key for s in new_subjects}
    is_new = np.array([s in new_names for s in traffic.subjects.tolist()])
    groups = {"old subjects": ~is_new, "new subjects": is_new, "all": np.ones_like(is_new)}
    rows = []
    for name, mask in groups.items():
        rows.append(
            {
                "traffic": name,
                "queries": int(mask.sum()),
                "before": _accuracy(refreshed.previous, before, traffic, mask),
                "after": _accuracy(refreshed.router, after, traffic, mask),
                **_references(traffic, mask),
            }
        )
    result = {
        "config": asdict(config),
        "old_subjects": [s.key for s in old_subjects],
        "new_subjects": sorted(new_names),
        "new_share": float(is_new.mean()),
        "traffic_key_matches_truth": _key_accuracy(world, traffic),
        "accuracy": rows,
        "coverage": {
            "uncovered": coverage.uncovered,
            "routed": coverage.routed,
            "clusters": [
                {"name": c.name, "size": c.size, "nearest_subject": c.nearest_subject, "description": c.description}
                for c in coverage.clusters
            ],
            "clusters_below_floor": coverage.clusters_below_floor,
        },
        "served": {"before": served_before, "after": served_after, "reload": reloaded},
        "refresh": {
            "subjects": refreshed.subjects,
            "skipped_subjects": refreshed.skipped_subjects,
            "requests": refresh_requests,
            "generated": refreshed.generated,
            "kept": refreshed.kept,
            "questions": refreshed.questions,
            "answering": refreshed.answering,
        },
        "shadow": refreshed.shadow.to_dict(),
        "timings": timings,
    }
    table = format_drift_table(result) + "\n\n" + refreshed.shadow.table()
    (out / "drift.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if progress:
        print(table)
    return {**result, "table": table}


def format_drift_table(result: dict) -> str:
    """The before/after accuracy table of a :func:`run_drift` result."""
    lines = [
        f"SIMULATED drift: trained on {', '.join(result['old_subjects'])}; {result['new_share']:.0%} of the "
        f"traffic from {', '.join(result['new_subjects'])} (never named by the tasks)",
        f"{'traffic':<13}  {'queries':>7}  {'top-1 before':>12}  {'after':>6}  {'top-3 before':>12}  {'after':>6}  "
        f"{'best single':>11}  {'oracle':>6}",
    ]
    for row in result["accuracy"]:
        lines.append(
            f"{row['traffic']:<13}  {row['queries']:>7d}  {row['before']['top1']:>12.3f}  {row['after']['top1']:>6.3f}  "
            f"{row['before']['top3']:>12.3f}  {row['after']['top3']:>6.3f}  {row['best_single']:>11.3f}  "
            f"{row['oracle']:>6.3f}"
        )
    r = result["refresh"]
    lines.append(
        f"refresh: {r['generated']} questions generated, {r['kept']} kept by the filter, {r['questions']} in the "
        f"merged dataset; {r['requests']} requests to the simulator"
    )
    return "\n".join(lines)
