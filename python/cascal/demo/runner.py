"""``cascal demo``: Routing with Generated Data end to end, offline, on a SIMULATED pool.

The pipeline (every step is the real library function, talking HTTP to the simulator through the
same OpenAI client a real deployment uses):

1. start the simulator (:mod:`cascal.simulate`) on 127.0.0.1, on a free port;
2. **test set**: the oracle generator writes held-out questions whose key is the simulator's hidden
   truth; the pool answers them (:func:`cascal.pipeline.answer.answer_dataset`); they are embedded;
3. for each generator (weak, then strong): **generate** a training set from the subject descriptions
   (:func:`cascal.pipeline.generate.generate_dataset`), **answer** it with the pool, **embed** it
   (:func:`cascal.pipeline.embed.embed_dataset`), **filter** it (:func:`cascal.pipeline.filter.filter_dataset`),
   **train** CASCAL (:func:`cascal.pipeline.train.train_router`) and the baselines on the raw and on
   the filtered data;
4. **route** and **evaluate** on the test set with :mod:`cascal.evaluation.metrics`: top-1 accuracy
   (the first routed model's answer) and top-3 accuracy (the plurality vote of the three routed
   models, ties to the more confident, then the higher-ranked model);
5. write ``report.md``, ``results.json`` and the plots (:mod:`cascal.evaluation.plots`) into the
   output folder.

Routers compared: CASCAL (query-only: never reads the generator's key), kNN correctness (query-answer:
scores the pool against the generator's key), the best single model by consensus (label-free), and
two references computed on the test set's true answers: the best single model and the oracle (any
pool model right). With the weak generator, whose key is wrong more often than right and shares the
mistakes of two pool models, the query-answer router falls while CASCAL holds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from cascal.data import ResponseMatrix
from cascal.demo.results import GENERATORS, DemoConfig, DemoResult, RouterScore
from cascal.errors import DataError, InvalidParameterError

PathLike = Union[str, Path]

EMBEDDER = "hashing-256"
ANSWER_CACHE = "answer_cache.sqlite"
GENERATION_CACHE = "generation_cache.sqlite"


# ---------------------------------------------------------------------------- evaluation
def evaluate_router(
    router: Any, train_embeddings: np.ndarray, train: ResponseMatrix, test: ResponseMatrix
) -> tuple[float, float]:
    """Fit ``router`` on the training data and return its (top-1, top-3) accuracy on ``test``."""
    router.fit(train_embeddings, train)
    return evaluate_fitted(router, test)


def _embeddings(data: ResponseMatrix, name: str) -> np.ndarray:
    if data.embeddings is None:
        raise DataError(f"{name}: the dataset has no embeddings")
    return data.embeddings


def evaluate_fitted(router: Any, test: ResponseMatrix) -> tuple[float, float]:
    """(top-1, top-3 vote) accuracy of a fitted router on ``test`` (its embeddings and true key),
    scored as the evaluation harness scores routers (:func:`cascal.evaluation.metrics.ensemble_accuracy`)."""
    from cascal.evaluation.metrics import ensemble_accuracy

    gold = np.asarray(test.gold)
    routing = router.route(_embeddings(test, "test"), top_k=3)
    confidence = router.tie_break_confidence(test)
    top1 = ensemble_accuracy(routing.ranked[:, :1], test.answers, gold, confidence)
    top3 = ensemble_accuracy(routing.ranked, test.answers, gold, confidence)
    return top1, top3


def reference_scores(test: ResponseMatrix) -> list[RouterScore]:
    """Best single model and oracle, computed on the test set's true answers."""
    from cascal.evaluation.metrics import ensemble_accuracy, model_accuracy, oracle_accuracy

    gold = np.asarray(test.gold)
    accuracy = model_accuracy(test.answers, gold)
    order = np.argsort(-accuracy, kind="stable")
    ranked = np.broadcast_to(order[:3], (test.n_questions, 3))
    top3 = ensemble_accuracy(ranked, test.answers, gold)
    oracle = oracle_accuracy(test.answers, gold)
    return [
        RouterScore("best single (true answers)", "reference", "-", "-", float(accuracy[order[0]]), top3),
        RouterScore("oracle (any model right)", "reference", "-", "-", oracle, oracle),
    ]


def _baselines(config: DemoConfig) -> list[tuple[str, str, Callable[[], Any]]]:
    from cascal.baselines import BestSingleConsensus, KNNCorrectness

    return [
        ("kNN correctness", "query-answer", lambda: KNNCorrectness(k=config.knn_k)),
        ("best single (consensus)", "label-free", BestSingleConsensus),
    ]


# ---------------------------------------------------------------------------- pipeline
def _stage(name: str, timings: dict[str, float], progress: bool) -> Callable[[], None]:
    if progress:
        print(f"[demo] {name} ...", flush=True)
    start = time.perf_counter()

    def done() -> None:
        timings[name] = round(time.perf_counter() - start, 2)

    return done


def _tasks(config: DemoConfig, n: int) -> Any:
    from cascal.llm.config import TasksConfig
    from cascal.simulate import SUBJECTS

    subjects = SUBJECTS[: config.n_subjects]
    return TasksConfig(subjects={s.key: s.description for s in subjects}, questions={s.key: n for s in subjects})


def _key_accuracy(world: Any, data: ResponseMatrix) -> float:
    """Share of questions whose key equals the simulator's hidden truth."""
    from cascal.simulate.questions import find_case

    truth = np.array([world.truth(find_case(q), int(n)) for q, n in zip(data.questions or [], data.n_options)])
    return float(np.mean(truth == data.gold))


def _fresh_folder(folder: Path) -> Path:
    """Remove a dataset folder left by an earlier demo run (the response caches live outside it, so a
    rerun replays every request from them for free); refuses to delete anything that is not one."""
    import shutil

    if folder.exists():
        if not (folder / "questions.jsonl").exists():
            raise InvalidParameterError(
                f"out_dir: {folder} exists and is not a dataset folder of an earlier demo run; choose another --out"
            )
        shutil.rmtree(folder)
    return folder


def _prepare(folder: Path, pool: Any, cache: Path, config: DemoConfig, progress: bool) -> ResponseMatrix:
    """Answer and embed a generated dataset folder; return it with its embeddings."""
    from cascal.io import load_dataset
    from cascal.pipeline.answer import answer_dataset
    from cascal.pipeline.embed import embed_dataset

    answer_dataset(folder, pool, cache_path=cache, progress=progress, concurrency=config.concurrency)
    embed_dataset(folder, EMBEDDER, progress=False)
    return load_dataset(folder, embeddings=EMBEDDER)


def run_demo(
    out_dir: PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    generators: Sequence[str] = GENERATORS,
    config: Optional[DemoConfig] = None,
    progress: bool = True,
) -> dict:
    """Run the whole Routing-with-Generated-Data pipeline on the simulator and write a report.

    Args:
        out_dir: folder for the datasets, routers, caches, ``report.md``, ``results.json`` and plots.
        quick: a smaller run (2 subjects, fewer questions) for tests and a first look.
        seed: the simulated world's seed.
        generators: generator strengths to compare (``weak``, ``strong``, ``medium``).
        config: explicit sizes (overrides ``quick``, ``seed`` and ``generators``).
        progress: print stages and show progress bars.

    Returns:
        ``results.json``'s content: config, scores (router, kind, generator, data, top1, top3),
        per-generator statistics, test-set facts, timings and example routes; plus ``"report"``
        (the report's path) and ``"table"`` (the printed table).
    """
    from cascal.demo.report import format_table, write_report
    from cascal.pipeline.generate import generate_dataset
    from cascal.simulate import SimWorld, serve_simulator, simulator_pool
    from cascal.simulate.server import simulator_generator

    config = config or DemoConfig.for_mode(quick, seed, generators)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = SimWorld(seed=config.seed)
    result = DemoResult(config=config, scores=[])
    timings = result.timings
    total = time.perf_counter()

    with serve_simulator(world) as server:
        pool = simulator_pool(server.base_url, world, max_concurrency=config.concurrency)
        if progress:
            print(f"[demo] SIMULATED LLM server on {server.base_url}: pool {', '.join(world.model_names)}", flush=True)

        done = _stage("test set: generate (true key) + answer + embed", timings, progress)
        test_dir = generate_dataset(
            _tasks(config, config.n_test),
            simulator_generator(server.base_url, "sim-generator-oracle"),
            _fresh_folder(out / "test"),
            cache_path=out / GENERATION_CACHE,
            progress=progress,
        )
        test = _prepare(test_dir, pool, out / ANSWER_CACHE, config, progress)
        result.test = {"questions": test.n_questions, "key_matches_truth": _key_accuracy(world, test)}
        done()
        result.scores += reference_scores(test)

        routers: dict[str, Any] = {}
        for strength in config.generators:
            done = _stage(f"{strength} generator: generate + answer + embed + filter", timings, progress)
            sets, result.generation[strength] = _training_sets(
                strength, server.base_url, pool, world, out, config, progress
            )
            done()
            done = _stage(f"{strength} generator: train + route + evaluate", timings, progress)
            for data_name, (folder, data) in sets.items():
                router, scores = _score_training_set(strength, data_name, folder, data, test, out, config)
                routers[f"{strength}/{data_name}"] = router
                result.scores += scores
            done()

    result.examples = _example_routes(routers[f"{config.generators[0]}/raw"], test, world)
    timings["total"] = round(time.perf_counter() - total, 2)
    table = format_table(result)
    report_path = write_report(result, out, routers[f"{config.generators[0]}/raw"], test, world)
    text = json.dumps(result.to_dict(), indent=2)
    (out / "results.json").write_text(text + "\n", encoding="utf-8")
    if progress:
        print(table)
        print(f"[demo] report: {report_path}")
    return {**json.loads(text), "report": str(report_path), "table": table}


def _training_sets(
    strength: str, base_url: str, pool: Any, world: Any, out: Path, config: DemoConfig, progress: bool
) -> tuple[dict[str, tuple[Path, ResponseMatrix]], dict]:
    """Generate, answer, embed and filter one generator's training data.

    Returns ``{"raw": (folder, data), "filtered": (folder, data)}`` and the generator's statistics
    (key accuracy against the simulator's truth, self-answer, spread, what the filter kept)."""
    from cascal.io import load_dataset
    from cascal.pipeline.filter import filter_dataset
    from cascal.pipeline.generate import generate_dataset
    from cascal.simulate.server import simulator_generator

    name = f"sim-generator-{strength}"
    raw_dir = generate_dataset(
        _tasks(config, config.n_train),
        simulator_generator(base_url, name),
        _fresh_folder(out / f"train_{strength}"),
        cache_path=out / GENERATION_CACHE,
        progress=progress,
    )
    raw = _prepare(raw_dir, pool, out / ANSWER_CACHE, config, progress)
    filtered_dir = _fresh_folder(out / f"train_{strength}_filtered")
    report = filter_dataset(raw_dir, filtered_dir)
    filtered = load_dataset(filtered_dir, embeddings=EMBEDDER)
    stats = {
        "generator": name,
        "questions": raw.n_questions,
        "key_accuracy": _key_accuracy(world, raw),
        "self_answer": report.overall.self_answer,
        "spread": report.overall.spread,
        "kept_by_filter": filtered.n_questions,
        "key_accuracy_after_filter": _key_accuracy(world, filtered),
    }
    return {"raw": (raw_dir, raw), "filtered": (filtered_dir, filtered)}, stats


def _score_training_set(
    strength: str,
    data_name: str,
    folder: Path,
    data: ResponseMatrix,
    test: ResponseMatrix,
    out: Path,
    config: DemoConfig,
) -> tuple[Any, list[RouterScore]]:
    """Train CASCAL (``cascal train``'s function, saved next to the data) and the baselines on one
    training set; score them all on ``test``. Returns the CASCAL router and the scores."""
    from cascal.pipeline.train import train_router

    router = train_router(
        folder, out / f"router_{strength}_{data_name}.cascal", embeddings=EMBEDDER, random_state=config.seed
    )
    top1, top3 = evaluate_fitted(router, test)
    scores = [RouterScore("CASCAL", "query-only", strength, data_name, top1, top3)]
    for label, kind, make in _baselines(config):
        top1, top3 = evaluate_router(make(), _embeddings(data, folder.name), data, test)
        scores.append(RouterScore(label, kind, strength, data_name, top1, top3))
    return router, scores


def _example_routes(router: Any, test: ResponseMatrix, world: Any, n: int = 3) -> list[dict]:
    """A few test questions with their niche, the routed top-3 and the niche's true specialist."""
    from cascal.embedding import load_embedder
    from cascal.pipeline.route import rank_question
    from cascal.simulate import SUBJECTS
    from cascal.simulate.catalogue import recognise_niche

    embedder = load_embedder(EMBEDDER)
    picks = np.linspace(0, test.n_questions - 1, n).astype(int)
    out = []
    for i in picks:
        question = (test.questions or [])[i]
        niche = recognise_niche(question)
        ranked = rank_question(router, question, embedder=embedder)
        best = max(world.model_names, key=lambda m: world.skill(m, niche))
        out.append(
            {
                "question": question,
                "niche": SUBJECTS[niche[0]].niches[niche[1]].name if niche else None,
                "routed_top3": [m.name for m in ranked[:3]],
                "true_specialist": best,
            }
        )
    return out
