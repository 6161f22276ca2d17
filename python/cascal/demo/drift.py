"""``cascal demo --drift``: traffic drifts to topics the tasks never named; a label-free refresh follows it.

On the simulator (every step the real library function, over HTTP):

1. **train** a router on the first ``n_old`` subjects of the simulated catalogue: generate, answer,
   embed, filter, train (the router a deployment would serve);
2. **traffic**: held-out questions from those subjects *and* from ``n_new`` further subjects the
   tasks never named (a third of the queries with the defaults); the simulated pool has niche
   specialists there too. The oracle generator writes them, so their key is the simulator's hidden
   truth; the old router's decisions on them are written as a gateway decision log with texts
   (:class:`cascal.serve.decision_log.DecisionLog`, as ``cascal serve --log-text`` writes it);
3. **refresh** (:func:`cascal.pipeline.refresh.refresh_router`) with a tasks file for the new
   subjects, written here from the simulator's subject descriptions, and the decision log for the
   shadow check;
4. **measure** with the true answers the routing accuracy of both routers (top-1: the routed
   model's answer; top-3: the vote of the three routed models) on the old subjects' traffic and on
   the new subjects' traffic.

The results (``drift.json``) hold both accuracies per group, the requests the refresh paid, and the
shadow check.
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

TASKS_FILE = "new_tasks.yaml"
DECISION_LOG = "decisions.jsonl"


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


def _write_tasks_file(path: Path, subjects: Any, n: int) -> Path:
    """A tasks.yaml for ``subjects`` from the simulator's descriptions (what ``cascal coverage`` drafts)."""
    import yaml

    body = {"questions_per_subject": n, "subjects": {s.key: s.description for s in subjects}}
    header = "# tasks for the subjects the traffic drifted to (written from the simulator's catalogue)\n"
    path.write_text(header + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def _answer_and_embed(folder: Path, pool: Any, cache: Path, config: DriftConfig, progress: bool) -> Any:
    """Answer and embed a generated dataset folder; return it with its embeddings."""
    from cascal.io import load_dataset
    from cascal.pipeline.answer import answer_dataset
    from cascal.pipeline.embed import embed_dataset

    answer_dataset(folder, pool, cache_path=cache, progress=progress, concurrency=config.concurrency)
    embed_dataset(folder, EMBEDDER, progress=False)
    return load_dataset(folder, embeddings=EMBEDDER)


def _accuracy(router: Any, traffic: Any, rows: np.ndarray) -> dict[str, float]:
    from cascal.demo.runner import evaluate_fitted

    top1, top3 = evaluate_fitted(router, traffic.subset(rows))
    return {"top1": top1, "top3": top3}


def _references(traffic: Any, rows: np.ndarray) -> dict[str, float]:
    """Best single model (by true accuracy on these rows) and the oracle, top-1."""
    from cascal.evaluation.metrics import model_accuracy, oracle_accuracy

    part = traffic.subset(rows)
    gold = np.asarray(part.gold)
    return {
        "best_single": float(model_accuracy(part.answers, gold).max()),
        "oracle": float(oracle_accuracy(part.answers, gold)),
    }


def _write_decision_log(path: Path, router: Any, traffic: Any) -> Path:
    """The old router's decisions on the traffic, logged with texts as the gateway logs them."""
    from cascal.serve.decision_log import DecisionLog, DecisionRecord

    path.unlink(missing_ok=True)
    assert traffic.embeddings is not None
    routing = router.route(traffic.embeddings)
    log = DecisionLog(path, log_text=True)
    try:
        for text, ranked in zip(traffic.questions or [], routing.ranked):
            ranking = [router.model_names_[m] for m in ranked]
            log.write(DecisionRecord(endpoint="chat", text=text, ranking=ranking, model=ranking[0]))
    finally:
        log.close()
    return path


def run_drift(out_dir: PathLike, config: DriftConfig, *, progress: bool = True) -> dict:
    """Run the drift experiment (module docstring) in ``out_dir``; returns what ``drift.json`` holds,
    plus ``"table"`` (the printed table)."""
    from cascal.io.queries import read_queries
    from cascal.llm.config import load_tasks
    from cascal.pipeline.filter import filter_dataset
    from cascal.pipeline.generate import generate_dataset
    from cascal.pipeline.refresh import refresh_router
    from cascal.pipeline.train import train_router
    from cascal.simulate import SUBJECTS, SimWorld, serve_simulator, simulator_pool
    from cascal.simulate.server import simulator_generator

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
        old = train_router(dataset_dir, router_file, embeddings=EMBEDDER, random_state=config.seed)
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
        log_file = _write_decision_log(out / DECISION_LOG, old, traffic)

        stage("refresh")
        work = out / "refresh"
        if work.exists():
            import shutil

            shutil.rmtree(work)  # the caches live beside it, in out/: a rerun replays them for free
        tasks_file = _write_tasks_file(out / TASKS_FILE, new_subjects, config.n_train)
        sent_before = len(server.request_log)
        refreshed = refresh_router(
            dataset_dir,
            router_file,
            load_tasks(tasks_file),
            generator,
            pool,
            work_dir=work,
            queries=read_queries(log_file).texts,
            queries_source=str(log_file),
            concurrency=config.concurrency,
            progress=progress,
        )
        refresh_requests = len(server.request_log) - sent_before
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
                "before": _accuracy(refreshed.previous, traffic, mask),
                "after": _accuracy(refreshed.router, traffic, mask),
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
        "refresh": {
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
