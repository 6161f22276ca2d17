"""``cascal train DATASET --out router.cascal``: fit a CASCAL router on a dataset folder and save it.

The dataset needs the pool's answers (``predictions.csv``, e.g. from ``cascal answer``) and question
embeddings (``embeddings_<name>.npy``, e.g. from ``cascal embed``). The answer key is never read: CASCAL
is query-only. The router file records the embedder's name, so ``cascal route`` embeds new questions
the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Union

NAME = "train"
HELP = "fit a CASCAL router on a dataset folder (answers + embeddings) and save it to one file"


def train_router(
    dataset_dir: Union[str, Path],
    out_path: Union[str, Path],
    *,
    embeddings: str = "auto",
    **router_params: Any,
) -> Any:
    """Fit :class:`cascal.CascalRouter` on ``dataset_dir`` and save it to ``out_path``.

    Args:
        dataset_dir: a dataset folder with ``predictions.csv`` and an ``embeddings_<name>.npy``.
        out_path: the router file to write.
        embeddings: which embeddings file: ``"auto"`` (the folder's only one) or an embedder name.
        router_params: constructor arguments of :class:`cascal.CascalRouter`.

    Returns:
        the fitted router (also saved).

    Raises:
        cascal.DataError: the folder has no pool answers or no embeddings.
    """
    from cascal.data import DataError
    from cascal.io import load_dataset
    from cascal.router import CascalRouter

    dataset = load_dataset(dataset_dir, embeddings=embeddings)
    if dataset.n_models == 0:
        raise DataError(f"{dataset_dir}: predictions.csv has no model columns; run `cascal answer` on it first")
    if dataset.embeddings is None:
        raise DataError(f"{dataset_dir}: no embeddings_<name>.npy; run `cascal embed` on it first")
    router = CascalRouter(embedding_model=dataset.embedding_model, **router_params)
    router.fit(dataset.embeddings, dataset)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    router.save(out)
    return router


def describe(router: Any) -> str:
    """A short text summary of a fitted router: pool, embedder, niches per subject, global ranking."""
    lines = [f"embedder: {router.embedding_model}", f"pool ({len(router.model_names_)} models):"]
    order = sorted(range(len(router.model_names_)), key=lambda m: -router.global_scores_[m])
    for m in order:
        lines.append(f"  {router.model_names_[m]:<32} mean consensus score {router.global_scores_[m]:.3f}")
    lines.append("niches per subject:")
    for subject in router.subject_names_:
        lines.append(f"  {subject:<32} {len(router.niches_[subject])}")
    lines.append(_routing_line(router))
    return "\n".join(lines)


def _routing_line(router: Any) -> str:
    """The routing constants in use, saying which ones were calibrated on the training data."""
    def how(param: object) -> str:
        return " (calibrated)" if param == "auto" else ""

    temp = router.subject_temp_
    subjects = "hard (nearest subject only)" if temp == 0 else f"soft, temperature {temp:.4f}{how(router.subject_temp)}"
    return (f"routing: subjects {subjects}; fallback to the global ranking beyond cosine distance "
            f"{router.fallback_distance_:.3f}{how(router.fallback_distance)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder with predictions.csv and embeddings_<name>.npy")
    parser.add_argument("--out", required=True, help="router file to write (e.g. router.cascal)")
    parser.add_argument("--embeddings", default="auto", help="embedder name of the embeddings file to use (default: the only one)")
    parser.add_argument("--clustering", choices=("agglomerative", "kmeans"), default=None, help="niche clustering method")
    parser.add_argument("--max-niches", type=int, default=None, help="largest number of niches per model and subject")
    parser.add_argument("--min-consensus", type=float, default=None, help="agreement a question needs to count toward a niche")
    parser.add_argument("--top-k", type=int, default=None, help="ensemble size stored as the router's default")
    parser.add_argument("--subject-temp", type=_number_or_auto, default=None, metavar="T|auto",
                        help="soft subject assignment temperature; 0 = nearest subject only; "
                             "default auto (calibrated on the training subjects)")
    parser.add_argument("--fallback-distance", type=_number_or_auto, default=None, metavar="D|auto",
                        help="niche distance beyond which the global ranking blends in; "
                             "default auto (0.99 quantile of the training questions' distances)")
    parser.add_argument("--random-state", type=int, default=0, help="seed of the clustering (default 0)")


def _number_or_auto(text: str) -> Union[float, str]:
    """``"auto"`` or a float (argparse type of the calibrated routing constants)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _router_params(args: argparse.Namespace) -> dict:
    params: dict = {"random_state": args.random_state}
    for option in ("clustering", "max_niches", "min_consensus", "top_k", "subject_temp", "fallback_distance"):
        value: Optional[Any] = getattr(args, option)
        if value is not None:
            params[option] = value
    return params


def run(args: argparse.Namespace) -> int:
    try:
        router = train_router(args.dataset, args.out, embeddings=args.embeddings, **_router_params(args))
    except (ValueError, OSError) as exc:  # DataError, a bad router parameter, an unreadable folder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(describe(router))
    print(f"saved router to {args.out}")
    return 0
