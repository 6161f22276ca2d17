"""Runs routers × key sources × seeds on one dataset and collects every number.

:func:`run_evaluation` is the function behind ``cascal evaluate``. Per pool and seed it splits the
data 60/40 stratified by category; label-free routers are fitted once on the training answers with
the key blanked out (so they cannot read it), query-answer routers once per key source on the
training answers with that key; every router is scored on the test split's real gold. The oracle
is computed from the test answers directly (any pool model right).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from cascal.data import NO_ANSWER, ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.evaluation.metrics import (
    ensemble_correct,
    kendall_tau,
    mean_std,
    model_accuracy,
    oracle_accuracy,
    per_category_accuracy,
)
from cascal.evaluation.protocol import (
    KeySource,
    ProtocolError,
    Split,
    expand_pools,
    make_split,
    resolve_keys,
    training_key,
)
from cascal.evaluation.results import NO_KEY, FittedExample
from cascal.evaluation.routers import RouterSpec, select_routers
from cascal.router.base import BaseRouter

#: Ensemble size of the top-k vote metric.
VOTE_K = 3

PathLike = Union[str, Path]


def run_evaluation(
    data: Union[PathLike, ResponseMatrix],
    *,
    pools: Sequence[str] = ("large",),
    keys: Sequence[str] = ("real", "strong", "medium", "weak"),
    generator_keys: Sequence[str] = (),
    seeds: int = 5,
    routers: Optional[Sequence[str]] = None,
    out_dir: Optional[PathLike] = None,
    progress: bool = True,
    plots: bool = True,
    out_of_range: Literal["error", "unparsable"] = "unparsable",
    cost: bool = False,
    prices: Optional[Any] = None,
) -> dict[str, Any]:
    """Evaluate routers on a dataset with real answers and return the results dict.

    Args:
        data: a dataset folder (loaded with :func:`cascal.io.load_dataset`) or a loaded
            :class:`ResponseMatrix` that carries embeddings and the real gold.
        pools: pool specifications: ``large``, ``small``, ``all``, ``lone-strong`` (24 pools,
            :func:`cascal.evaluation.protocol.lone_strong_pools`) or comma-separated model names.
        keys: key sources for query-answer routers: ``real`` (gold), ``strong``, ``medium``, ``weak``.
        generator_keys: extra simulated generators, by model name.
        seeds: number of splits (seeds ``0..seeds-1``).
        routers: router names (see :func:`cascal.evaluation.routers.available_routers`, plus
            ``oracle``); ``None`` = all.
        out_dir: when given, write ``results.json``, ``report.md`` and the PNG plots there.
        progress: show tqdm progress bars.
        plots: write the PNG plots (only with ``out_dir``).
        out_of_range: how a folder's prediction letters beyond their options are read
            (:func:`cascal.io.load_dataset`): ``"unparsable"`` (default, counted and reported) or
            ``"error"`` (refused).
        cost: also run the cost-accuracy evaluation of cost-aware CASCAL per pool
            (:mod:`cascal.evaluation.cost_curve`; results under each pool's ``cost``, plus
            ``cost_<pool>.png`` and ``cost.md`` in ``out_dir``). Skipped, with a message, when the
            data has no token counts.
        prices: :class:`cascal.router.costs.Prices` for ``cost`` (default: 1 USD per million
            tokens for every model, so the curve counts tokens).

    Returns:
        ``{"config", "cascal_version", "data_path", "created", "pools": {pool: {...}}}``; each pool
        holds ``models``, ``runs`` (one record per seed × router × key), ``summary`` (mean ± std per
        router × key), ``oracle``, ``model_accuracy``, ``key_accuracy`` (see :func:`evaluate_pool`).
    """
    from cascal import __version__

    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise InvalidParameterError(f"seeds: must be a positive integer, got {seeds!r}")
    if not pools:
        raise InvalidParameterError("pools: give at least one pool")
    specs, with_oracle = select_routers(None if routers is None else list(routers))
    dataset, data_path = load_evaluation_data(data, out_of_range)
    unlabelled = int((gold_of(dataset) < 0).sum())
    if unlabelled:
        raise ProtocolError(f"data: {unlabelled} question(s) have no gold answer; the evaluation needs real gold")
    results: dict[str, Any] = {
        "config": {
            "pools": list(pools),
            "keys": list(keys),
            "generator_keys": list(generator_keys),
            "seeds": list(range(int(seeds))),
            "routers": list(specs),
            "oracle": with_oracle,
            "train_fraction": 0.6,
            "vote_k": VOTE_K,
        },
        "cascal_version": __version__,
        "data_path": data_path,
        # prediction letters beyond their question's options, counted as unparsable, per model
        "out_of_range_answers": dict(dataset.extra.get("out_of_range", {})),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pools": {},
    }
    examples: list[FittedExample] = []
    cost_setup = _cost_setup(dataset, data, prices) if cost else None
    for pool_spec, pool in expand_pools(pools, dataset):
        key_sources = resolve_keys(list(keys), list(generator_keys), dataset.model_names, pool)
        pool_result, example = evaluate_pool(
            dataset, pool, key_sources, specs, int(seeds), with_oracle=with_oracle, progress=progress, label=pool_spec
        )
        results["pools"][pool_spec] = pool_result
        examples.extend(example)
        if cost_setup is not None:
            pool_result["cost"] = _run_cost(cost_setup, pool, int(seeds), progress)
    if out_dir is not None:
        from cascal.evaluation.report import write_outputs

        write_outputs(results, Path(out_dir), examples if plots else None)
        if cost_setup is not None:
            _write_cost(results, Path(out_dir), plots)
    return results


def _cost_setup(dataset: ResponseMatrix, data: Any, prices: Optional[Any]) -> tuple[Optional[ResponseMatrix], Any, str]:
    """(data with token counts or None, prices, note) for the cost evaluation."""
    from cascal.evaluation.cost_curve import TOKEN_PRICES, cost_data
    from cascal.router.costs import Prices

    if prices is None:
        prices = Prices({m: (TOKEN_PRICES, TOKEN_PRICES) for m in dataset.model_names})
    folder = None if isinstance(data, ResponseMatrix) else Path(data)
    with_tokens, note = cost_data(dataset, folder, prices)
    print(f"cost: {note}", file=sys.stderr)
    return with_tokens, prices, note


def _run_cost(setup: tuple[Optional[ResponseMatrix], Any, str], pool: list[str], seeds: int, progress: bool) -> dict:
    from cascal.evaluation.cost_curve import evaluate_cost

    data, prices, note = setup
    if data is None:
        return {"skipped": note}
    unpriced = [m for m in pool if prices.price_of(m) is None]
    if unpriced:
        print(f"cost: no price for {unpriced}; priced 0", file=sys.stderr)
    return evaluate_cost(data, pool, prices, seeds, note=note, progress=progress)


def _write_cost(results: Mapping[str, Any], out_dir: Path, plots: bool) -> None:
    from cascal.evaluation.cost_curve import cost_table, plot_cost_curve

    parts = ["# Cost-aware routing: cost-accuracy evaluation", ""]
    for name, pool in results["pools"].items():
        cost = pool.get("cost", {})
        parts += [f"## pool {name}", ""]
        if "skipped" in cost:
            parts += [cost["skipped"], ""]
            continue
        parts += [cost["note"], "", cost_table(cost), ""]
        if plots:
            figure = plot_cost_curve(cost, f"cost vs accuracy, pool {name}", out_dir / f"cost_{name}.png")
            parts += [f"![cost curve]({figure.name})", ""]
    (out_dir / "cost.md").write_text("\n".join(parts), encoding="utf-8")


def load_evaluation_data(
    data: Union[PathLike, ResponseMatrix], out_of_range: Literal["error", "unparsable"]
) -> tuple[ResponseMatrix, Optional[str]]:
    """The dataset to evaluate and its resolved folder path (``None`` for an in-memory matrix);
    letters beyond their options are counted and noted on stderr."""
    if isinstance(data, ResponseMatrix):
        return data, None
    from cascal.io import load_dataset

    path = Path(data)
    # real harness outputs contain a few letters beyond a question's options: they are counted as
    # unparsable, and the counts go into results.json ("out_of_range_answers") and onto stderr
    dataset = load_dataset(path, out_of_range=out_of_range)
    counts = dataset.extra.get("out_of_range", {})
    if counts:
        print(
            f"note: {sum(counts.values())} answer(s) in {path / 'predictions.csv'} name an option beyond their "
            f"question's options; counted as unparsable (per model in results.json)",
            file=sys.stderr,
        )
    return dataset, str(path.resolve())


def evaluate_pool(
    data: ResponseMatrix,
    pool: Sequence[str],
    keys: Sequence[KeySource],
    routers: Mapping[str, RouterSpec],
    n_seeds: int,
    *,
    with_oracle: bool = True,
    progress: bool = True,
    label: str = "pool",
) -> tuple[dict[str, Any], list[FittedExample]]:
    """All seeds × routers × keys on one pool. Returns the pool's results dict and the routers
    fitted on seed 0 (label-free ones, and query-answer ones on the first key source), which the
    niche plots read. With no key sources, query-answer routers are not run."""
    runs: list[dict[str, Any]] = []
    oracle: list[float] = []
    model_acc: list[np.ndarray] = []
    model_cat: list[dict[str, np.ndarray]] = []
    key_acc: dict[str, list[float]] = {k.name: [] for k in keys}
    examples: list[FittedExample] = []
    n_fits = sum(1 if not _uses_key(spec) else len(keys) for spec in routers.values())
    bar = tqdm(total=n_seeds * n_fits, desc=f"evaluate {label}", unit="fit", disable=not progress, leave=False)
    try:
        for seed in range(n_seeds):
            split = make_split(data, pool, seed)
            test = split.test
            oracle.append(oracle_accuracy(test.answers, gold_of(test)))
            model_acc.append(model_accuracy(test.answers, gold_of(test)))
            model_cat.append(_model_accuracy_by_category(test))
            train_keys = {k.name: training_key(data, split, k) for k in keys}
            for name, key in train_keys.items():
                key_acc[name].append(float((key == gold_of(split.train)).mean()))
            blank = split.train.with_gold(np.full(split.train.n_questions, NO_ANSWER, dtype=np.int8))
            for name, spec in routers.items():
                key_names = [k.name for k in keys] if _uses_key(spec) else [NO_KEY]
                for key_name in key_names:
                    router = spec.factory(seed)
                    train = blank if key_name == NO_KEY else split.train.with_gold(train_keys[key_name])
                    bar.set_postfix_str(f"seed {seed} {name} key={key_name}")
                    record = evaluate_router(router, train, split)
                    record.update(seed=seed, router=name, key=key_name)
                    runs.append(record)
                    bar.update(1)
                    if seed == 0 and key_name in (NO_KEY, keys[0].name if keys else NO_KEY):
                        examples.append(FittedExample(label, name, router, split))
    finally:
        bar.close()
    categories = sorted(model_cat[0]) if model_cat else []
    pool_result: dict[str, Any] = {
        "models": list(pool),
        "keys": [{"name": k.name, "generator": k.generator} for k in keys],
        "runs": runs,
        "summary": summarize_runs(runs),
        "model_accuracy": {m: _summary([float(a[i]) for a in model_acc]) for i, m in enumerate(pool)},
        "model_accuracy_by_category": {
            m: {c: float(np.mean([mc[c][i] for mc in model_cat])) for c in categories} for i, m in enumerate(pool)
        },
        "key_accuracy": {name: _summary(values) for name, values in key_acc.items()},
    }
    if with_oracle:
        pool_result["oracle"] = _summary(oracle)
        pool_result["oracle"]["per_seed"] = oracle
    return pool_result, examples


def _uses_key(spec: RouterSpec) -> bool:
    return bool(getattr(spec.factory(0), "uses_answer_key", False))


def evaluate_router(router: BaseRouter, train: ResponseMatrix, split: Split) -> dict[str, Any]:
    """Fit ``router`` on ``train`` and score it on ``split.test``: top-1 and top-3 vote accuracy,
    Kendall τ of its global ranking (mean route score over the test queries) against the models'
    test accuracy, per-category accuracies, the share of each category routed first to each model,
    the constants ``fit`` chose (:meth:`BaseRouter.fitted_constants`) and timings."""
    test, gold = split.test, gold_of(split.test)
    start = time.perf_counter()
    router.fit(embeddings_of(train), train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    vote_k = min(VOTE_K, test.n_models)
    routing = router.route(embeddings_of(test), top_k=vote_k)
    confidence = router.tie_break_confidence(test)
    correct1 = ensemble_correct(routing.ranked[:, :1], test.answers, gold, confidence)
    correct3 = ensemble_correct(routing.ranked[:, :vote_k], test.answers, gold, confidence)
    route_seconds = time.perf_counter() - start
    global_scores = np.nanmean(np.where(np.isfinite(routing.scores), routing.scores, np.nan), axis=0)
    return {
        "top1": float(correct1.mean()),
        "top3": float(correct3.mean()),
        "kendall_tau": kendall_tau(global_scores, model_accuracy(test.answers, gold)),
        "global_scores": [float(s) for s in global_scores],
        "per_category": {
            "top1": per_category_accuracy(correct1, test.subjects),
            "top3": per_category_accuracy(correct3, test.subjects),
        },
        "first_choice_share": _first_choice_share(routing.ranked[:, 0], test),
        "fitted_constants": router.fitted_constants(),
        "fit_seconds": fit_seconds,
        "route_seconds": route_seconds,
    }


def _first_choice_share(first: np.ndarray, test: ResponseMatrix) -> dict[str, list[float]]:
    """Per category, the share of its test queries whose first choice is each model."""
    out = {}
    for category in np.unique(test.subjects):
        picks = first[test.subjects == category]
        out[str(category)] = (np.bincount(picks, minlength=test.n_models) / len(picks)).tolist()
    return out


def _model_accuracy_by_category(test: ResponseMatrix) -> dict[str, np.ndarray]:
    gold = gold_of(test)
    return {
        str(c): model_accuracy(test.answers[test.subjects == c], gold[test.subjects == c])
        for c in np.unique(test.subjects)
    }


def gold_of(responses: ResponseMatrix) -> np.ndarray:
    """``responses.gold`` (a ResponseMatrix always fills it in; -1 = unknown)."""
    if responses.gold is None:  # pragma: no cover - ResponseMatrix.__post_init__ sets it
        raise ProtocolError("responses: no gold array")
    return responses.gold


def embeddings_of(responses: ResponseMatrix) -> np.ndarray:
    """``responses.embeddings``, which every split of the harness carries."""
    if responses.embeddings is None:
        raise ProtocolError("data: the dataset has no embeddings; run `cascal embed` first")
    return responses.embeddings


def _summary(values: Sequence[float]) -> dict[str, Any]:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std}


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds of every (router, key) pair, in first-seen order: top-1, top-3,
    Kendall τ, and per-category top-1/top-3 means."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["router"], run["key"]), []).append(run)
    summary = []
    for (router, key), group in groups.items():
        row: dict[str, Any] = {"router": router, "key": key, "n_seeds": len(group)}
        for metric in ("top1", "top3", "kendall_tau"):
            row[metric] = _summary([g[metric] for g in group])
        row["per_category"] = {
            which: {
                c: float(np.mean([g["per_category"][which][c] for g in group])) for c in group[0]["per_category"][which]
            }
            for which in ("top1", "top3")
        }
        row["first_choice_share"] = {
            c: np.mean([g["first_choice_share"][c] for g in group], axis=0).tolist()
            for c in group[0]["first_choice_share"]
        }
        row["fit_seconds"] = _summary([g["fit_seconds"] for g in group])
        summary.append(row)
    return summary
