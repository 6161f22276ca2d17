"""Scores of one routing run: accuracy, routed-ensemble and oracle accuracy, per-category accuracy,
Kendall τ of model rankings, and mean ± std summaries over seeds."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import numpy.typing as npt
from scipy.stats import kendalltau

from cascal.errors import DataError
from cascal.router.base import ensemble_vote


def answer_correct(answers: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: the answer equals the gold option. Refuses unknown (-1) gold, so no question
    is silently left out of an accuracy."""
    answers = np.asarray(answers)
    gold = np.asarray(gold)
    if answers.shape != gold.shape or answers.ndim != 1:
        raise DataError(f"answers: expected shape {gold.shape} like gold, got {answers.shape}")
    if (gold < 0).any():
        raise DataError(
            f"gold: {int((gold < 0).sum())} question(s) have no gold answer (-1); score only labelled questions"
        )
    return answers == gold


def accuracy(answers: np.ndarray, gold: np.ndarray) -> float:
    """Share of questions whose answer equals the gold option (see :func:`answer_correct`)."""
    correct = answer_correct(answers, gold)
    if correct.size == 0:
        raise DataError("answers: cannot compute an accuracy over zero questions")
    return float(correct.mean())


def ensemble_correct(
    ranked: np.ndarray, answers: np.ndarray, gold: np.ndarray, confidence: Optional[np.ndarray] = None
) -> np.ndarray:
    """``(n,)`` bool: the plurality vote of the models routed to each question is the gold option.

    Args:
        ranked: ``(n, k)`` model indices chosen for each question, best first; ``k = 1`` scores the
            first choice's own answer (top-1), ``k = 3`` the top-3 vote.
        answers: ``(n, M)`` answer codes of every model (:class:`cascal.ResponseMatrix` ``answers``).
        gold: ``(n,)`` gold options, all known (see :func:`answer_correct`).
        confidence: ``(n, M)`` tie-break confidence of an all-different vote, or ``None`` for the
            routing order (:func:`cascal.router.base.ensemble_vote`).
    """
    return answer_correct(ensemble_vote(np.asarray(ranked), np.asarray(answers), confidence), gold)


def ensemble_accuracy(
    ranked: np.ndarray, answers: np.ndarray, gold: np.ndarray, confidence: Optional[np.ndarray] = None
) -> float:
    """Share of questions whose routed ensemble votes the gold option (see :func:`ensemble_correct`)."""
    correct = ensemble_correct(ranked, answers, gold, confidence)
    if correct.size == 0:
        raise DataError("answers: cannot compute an accuracy over zero questions")
    return float(correct.mean())


def oracle_accuracy(answers: np.ndarray, gold: np.ndarray) -> float:
    """Share of questions that at least one model answered right: the oracle router's accuracy, the
    ceiling of any routing of this pool. ``answers`` is ``(n, M)``; ``gold`` must be all known."""
    answers = np.asarray(answers)
    gold = np.asarray(gold)
    if answers.ndim != 2 or answers.shape[0] != gold.shape[0] or gold.ndim != 1:
        raise DataError(f"answers: expected shape ({gold.shape[0]}, M), got {answers.shape}")
    if (gold < 0).any():
        raise DataError(
            f"gold: {int((gold < 0).sum())} question(s) have no gold answer (-1); score only labelled questions"
        )
    if gold.size == 0:
        raise DataError("answers: cannot compute an accuracy over zero questions")
    return float((answers == gold[:, None]).any(axis=1).mean())


def per_category_accuracy(correct: np.ndarray, categories: np.ndarray) -> dict[str, float]:
    """Accuracy within every category, keyed by category name (sorted)."""
    correct = np.asarray(correct, dtype=bool)
    categories = np.asarray(categories).astype(str)
    if correct.shape != categories.shape:
        raise DataError(f"categories: expected shape {correct.shape}, got {categories.shape}")
    return {str(c): float(correct[categories == c].mean()) for c in np.unique(categories)}


def model_accuracy(answers: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """``(M,)`` accuracy of every model column on the gold answers; questions a model was not asked
    (-2) are left out of its accuracy, unparsable answers (-1) count as wrong; NaN if never asked."""
    answers = np.asarray(answers)
    gold = np.asarray(gold)
    if answers.ndim != 2 or answers.shape[0] != gold.shape[0]:
        raise DataError(f"answers: expected shape ({gold.shape[0]}, M), got {answers.shape}")
    if (gold < 0).any():
        raise DataError("gold: model accuracy needs a gold answer for every question")
    asked = answers != -2
    correct = (answers == gold[:, None]) & asked
    counts = asked.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct.sum(axis=0) / counts, np.nan)


def kendall_tau(router_scores: npt.ArrayLike, gold_scores: npt.ArrayLike) -> float:
    """Kendall's τ-b between a router's global model scores and the models' gold accuracies:
    +1 = same order, −1 = reversed; NaN when either side is constant (no ranking to compare)."""
    a = np.asarray(router_scores, dtype=np.float64)
    b = np.asarray(gold_scores, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise DataError(f"router_scores: expected shape {b.shape} like gold_scores, got {a.shape}")
    if a.size < 2:
        raise DataError("router_scores: Kendall tau needs at least 2 models")
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 2 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return math.nan
    return float(kendalltau(a[keep], b[keep]).statistic)


def mean_std(values: npt.ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) ignoring NaN values;
    ``(nan, nan)`` when nothing is left."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std
