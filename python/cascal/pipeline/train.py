"""Pipeline stage **train**: fit a CASCAL router on a dataset folder and save it to one file.

The dataset needs the pool's answers (``predictions.csv``, e.g. from ``cascal answer``) and question
embeddings (``embeddings_<name>.npy``, e.g. from ``cascal embed``). The answer key is never read:
CASCAL is query-only. The router file records the embedder's name (as ``cascal embed`` recorded it
next to the embeddings file) and, for an embedder made from files, their content hash, so routing
embeds new questions the same way and refuses an embedder with other files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal, Optional, Union

from cascal.errors import DataError, NoUsableAnswerWarning
from cascal.pipeline.embed import embedder_identity

__all__ = ["train_router", "describe", "labels_line"]


def train_router(
    dataset_dir: Union[str, Path],
    out_path: Union[str, Path],
    *,
    embeddings: str = "auto",
    out_of_range: Literal["error", "unparsable"] = "error",
    prices: Any = None,
    labels: Optional[Union[str, Path]] = None,
    **router_params: Any,
) -> Any:
    """Fit :class:`cascal.CascalRouter` on ``dataset_dir`` and save it to ``out_path``.

    Args:
        dataset_dir: a dataset folder with ``predictions.csv`` and an ``embeddings_<name>.npy``.
        out_path: the router file to write.
        embeddings: which embeddings file: ``"auto"`` (the folder's only one) or an embedder name.
        out_of_range: what a prediction letter beyond its question's options means: ``"error"``
            refuses the dataset, ``"unparsable"`` counts it as unparsable (see
            :func:`cascal.io.load_dataset`).
        prices: list prices for cost-aware routing (:class:`cascal.router.costs.Prices` or a
            mapping model -> ``(input, output)`` USD per million tokens); the folder's cost.csv
            gives the completion tokens (docs/algorithm.md#cost-aware-routing).
        labels: a labels file (``question_id,answer``, e.g. from ``cascal label``) whose answers
            calibrate the router (:func:`cascal.io.load_labels`; ``fit(..., labels=...)``).
        router_params: constructor arguments of :class:`cascal.CascalRouter`.

    Returns:
        the fitted router (also saved).

    Raises:
        cascal.errors.InvalidParameterError: a router parameter is out of range (checked before the
            dataset is read).
        cascal.errors.DataError: the folder has no questions, no pool answers or no embeddings;
            the labels file is malformed or names questions the folder lacks.

    Warns:
        NoUsableAnswerWarning: some models (or all) have no usable answer (only ``?`` and empty cells, see
            :meth:`cascal.ResponseMatrix.models_without_answers`); the router is still trained.
    """
    from cascal.io import load_dataset
    from cascal.router import CascalRouter

    CascalRouter(**router_params).validate_params()
    # memory-mapped embeddings: fit reads them block by block and never copies the whole matrix
    dataset = load_dataset(dataset_dir, embeddings=embeddings, out_of_range=out_of_range, mmap=True)
    if dataset.n_questions == 0:
        raise DataError(f"{dataset_dir}: questions.jsonl holds no question to train on")
    if dataset.n_models == 0:
        raise DataError(f"{dataset_dir}: predictions.csv has no model columns; run `cascal answer` on it first")
    if dataset.embeddings is None:
        raise DataError(f"{dataset_dir}: no embeddings_<name>.npy; run `cascal embed` on it first")
    dataset.warn_models_without_answers(str(Path(dataset_dir) / "predictions.csv"), stacklevel=2)
    y = None
    if labels is not None:
        from cascal.io import load_labels

        y = load_labels(labels, dataset)
    embedder_name, embedder_sha256 = (
        embedder_identity(dataset_dir, dataset.embedding_model) if dataset.embedding_model else (None, None)
    )
    router = CascalRouter(embedding_model=embedder_name, embedding_sha256=embedder_sha256, **router_params)
    with warnings.catch_warnings():
        # already warned above, naming the file
        warnings.simplefilter("ignore", NoUsableAnswerWarning)
        router.fit(dataset.embeddings, dataset, labels=y, prices=prices)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    router.save(out)
    return router


def describe(router: Any) -> str:
    """A short text summary of a fitted router: pool, embedder, niches per subject, global ranking."""
    lines = [f"embedder: {router.embedding_model}", f"pool ({len(router.model_names_)} models):"]
    order = sorted(range(len(router.model_names_)), key=lambda m: -router.global_scores_[m])
    costs = getattr(router, "global_costs_", None)
    for m in order:
        cost = "" if costs is None else f", expected ${costs[m]:.4f} per 1,000 queries"
        lines.append(f"  {router.model_names_[m]:<32} mean consensus score {router.global_scores_[m]:.3f}{cost}")
    lines.append("niches per subject:")
    for subject in router.subject_names_:
        lines.append(f"  {subject:<32} {len(router.niches_[subject])}")
    lines.append(_routing_line(router))
    diagnostics = getattr(router, "diagnostics_", None)
    if diagnostics is not None:
        lines.append(("" if diagnostics.trustworthy else "warning: ") + diagnostics.message)
        if not diagnostics.trustworthy:
            lines.extend(f"  - {reason}" for reason in diagnostics.reasons)
    return "\n".join(lines)


def _routing_line(router: Any) -> str:
    """The routing constants in use, saying which ones were calibrated on the training data."""

    def how(param: object) -> str:
        return " (calibrated)" if param == "auto" else ""

    temp = router.subject_temp_
    subjects = "hard (nearest subject only)" if temp == 0 else f"soft, temperature {temp:.4f}{how(router.subject_temp)}"
    return (
        f"routing: subjects {subjects}; fallback to the global ranking beyond cosine distance "
        f"{router.fallback_distance_:.3f}{how(router.fallback_distance)}"
    )


def labels_line(router: Any, path: Union[str, Path]) -> str:
    """The summary of a fit with the labels file ``path``: how many labelled questions it used, then
    (on a second line) which candidate router they chose and why (docs/algorithm.md#labels)."""
    fit = getattr(router, "label_fit_", None)
    used = int(fit.n_labels) if fit is not None else 0
    if used == 0:
        return f"labels: none in {path} (label-free fit)"
    line = f"labels: {used} labelled question{'s' if used != 1 else ''} from {path} calibrate the scores"
    choice = getattr(router, "label_choice_", None)
    if choice is not None:
        line += f"\nlabels chose {choice.chosen}: {choice.reason}"
    return line
