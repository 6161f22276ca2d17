"""Merge two answered dataset folders into a third: the questions of both, one column per model.

The rows are the first folder's questions, then the second's; the columns are the first folder's
models, then those only the second one has. A model one folder lacks is *not asked* on its
questions (an empty cell of predictions.csv: no vote), never "wrong". Logprobs and costs follow
the same rule (NaN where absent). The embeddings of the named embedder are stacked: both folders
must have them, of one dimension. Question ids keep their type (an integer id stays an integer);
an id both folders use is refused, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from cascal.data import NOT_ASKED, PER_QUESTION_EXTRA, ResponseMatrix
from cascal.errors import DataError

PathLike = Union[str, Path]

__all__ = ["merge_folders", "merge_responses"]


def _columns(data: ResponseMatrix, names: list[str], values: Optional[np.ndarray], fill: float) -> np.ndarray:
    """``values`` (``(n_q, n_m)`` of ``data``'s models, or ``None``) laid out on the columns ``names``."""
    dtype = np.int8 if fill == NOT_ASKED else np.float32
    out = np.full((data.n_questions, len(names)), fill, dtype=dtype)
    if values is not None:
        for col, name in enumerate(data.model_names):
            out[:, names.index(name)] = values[:, col]
    return out


def _ids(data: ResponseMatrix) -> list:
    return [q.item() if isinstance(q, np.generic) else q for q in np.asarray(data.question_ids).tolist()]


def merge_responses(first: ResponseMatrix, second: ResponseMatrix) -> ResponseMatrix:
    """The questions of ``first`` then ``second`` on the union of their models (module docstring).

    Raises:
        cascal.errors.DataError: a question id both use; texts or options missing in one; embeddings
            present in one only, or of different dimensions or embedders.
    """
    ids_first, ids_second = _ids(first), _ids(second)
    shared = {str(q) for q in ids_first} & {str(q) for q in ids_second}
    if shared:
        example = sorted(shared)[0]
        raise DataError(
            f"question_ids: {len(shared)} id(s) are in both datasets (e.g. {example!r}); the new questions need new ids"
        )
    if first.questions is None or second.questions is None or first.options is None or second.options is None:
        raise DataError("merge: both datasets need question texts and options")
    if (first.embeddings is None) != (second.embeddings is None):
        raise DataError("merge: embeddings in one dataset only; embed both with the same embedder")
    embeddings = None
    if first.embeddings is not None and second.embeddings is not None:
        if first.embeddings.shape[1] != second.embeddings.shape[1] or first.embedding_model != second.embedding_model:
            raise DataError(
                f"merge: embeddings of {first.embedding_model!r} ({first.embeddings.shape[1]}-d) and "
                f"{second.embedding_model!r} ({second.embeddings.shape[1]}-d) cannot be stacked"
            )
        embeddings = np.vstack([first.embeddings, second.embeddings]).astype(np.float32, copy=False)
    names = list(first.model_names) + [m for m in second.model_names if m not in first.model_names]

    def stack(attr: str, fill: float) -> Optional[np.ndarray]:
        a, b = getattr(first, attr), getattr(second, attr)
        if attr != "answers" and a is None and b is None:
            return None
        return np.vstack([_columns(first, names, a, fill), _columns(second, names, b, fill)])

    extra: dict = {}
    for key in PER_QUESTION_EXTRA:
        a, b = first.extra.get(key), second.extra.get(key)
        if a is None and b is None:
            continue
        blank: object = None if key == "question_records" else {}
        extra[key] = list(a or [blank] * first.n_questions) + list(b or [blank] * second.n_questions)
    answers = stack("answers", NOT_ASKED)
    assert answers is not None
    return ResponseMatrix(
        answers=answers,
        n_options=np.concatenate([first.n_options, second.n_options]),
        subjects=np.concatenate([first.subjects, second.subjects]),
        model_names=names,
        gold=np.concatenate([np.asarray(first.gold), np.asarray(second.gold)]),
        logprobs=stack("logprobs", np.nan),
        cost=stack("cost", np.nan),
        question_ids=np.array(ids_first + ids_second, dtype=object),
        questions=list(first.questions) + list(second.questions),
        options=[list(o) for o in first.options] + [list(o) for o in second.options],
        embeddings=embeddings,
        embedding_model=first.embedding_model,
        extra=extra,
    )


def merge_folders(first: PathLike, second: PathLike, out: PathLike, *, embeddings: str) -> ResponseMatrix:
    """Merge the dataset folders ``first`` and ``second`` (with their ``embeddings`` files, named by
    embedder) into the folder ``out``, written with :func:`cascal.io.save_dataset`; returns the merge.

    Raises:
        cascal.errors.DataError: ``out`` is one of the inputs, or any error of :func:`merge_responses`
            and :func:`cascal.io.load_dataset`.
    """
    from cascal.io import load_dataset, save_dataset

    target = Path(out)
    for source in (Path(first), Path(second)):
        if target.exists() and source.exists() and target.resolve() == source.resolve():
            raise DataError(f"out: {target} is an input folder; merge into a new folder")
    merged = merge_responses(load_dataset(first, embeddings=embeddings), load_dataset(second, embeddings=embeddings))
    save_dataset(merged, target)
    return merged
