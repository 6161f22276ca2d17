"""A few gold labels on top of the consensus (docs/algorithm.md#labels).

The label-free fit estimates skill from agreement with the pool; when one model is much stronger
than a crowd that makes the same mistakes, agreement ranks it low. A handful of labelled questions
measure each model directly. This module calibrates the consensus tables with them:

1. :class:`LabelBase` — what calibration reuses from a label-free fit: every training question's
   consensus scores, answers, subject and niche (nearest niche of its own subject);
2. :func:`fit_consensus_prior` — per model, the labelled correct count ``k_m`` of ``n_m`` is modelled
   as a two-component beta-binomial mixture: with probability ``pi`` the model *follows the
   consensus* (its accuracy is ``a + b * s_m``, ``s_m`` its mean consensus score, spread
   ``kappa``), otherwise its accuracy is unrelated to the consensus (uniform prior). ``a, b, kappa,
   pi`` are fitted by EM on the labels (empirical Bayes, no constant tuned to a dataset); the
   responsibility ``r_m`` is the posterior probability that model ``m`` follows the consensus;
3. :func:`calibrate` — global accuracies are the mixture posterior means; subject and niche
   accuracies are beta posteriors around a prior that adds the consensus' own deviation of that
   subject/niche (scaled by ``b`` and by ``r_m``) to the level above, with a prior strength fitted
   by the beta-binomial likelihood of that level's labels.

The results replace ``centroid_scores`` and ``global_scores``; the niches themselves (centroids,
sizes, subjects) stay those of the consensus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.special import betaln, gammaln

from cascal import kernels
from cascal.data import ResponseMatrix
from cascal.errors import DataError, InvalidParameterError

#: Value of a ``labels`` entry meaning "not labelled".
UNLABELLED = -1
#: Grid of prior strengths (pseudo-counts) searched by the beta-binomial likelihood.
KAPPA_GRID = np.logspace(-0.5, 3.5, 41)
#: Accuracy priors are kept inside ``[EPS, 1 - EPS]`` so that beta parameters stay positive.
EPS = 0.01
#: EM iterations of :func:`fit_consensus_prior`.
EM_ITERATIONS = 50


def check_labels(labels: object, responses: ResponseMatrix) -> Optional[np.ndarray]:
    """``labels`` as an ``(n_q,)`` int64 array (``-1`` = unlabelled), or ``None`` when it is ``None``.

    Raises:
        InvalidParameterError: not a 1-D integer array with one entry per row of ``responses``.
        DataError: an entry is below -1 or not an option of its question; the message names the
            first such row.
    """
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise InvalidParameterError(f"labels: expected an integer array of answer indices, got dtype {arr.dtype}")
    if arr.shape != (responses.n_questions,):
        raise InvalidParameterError(
            f"labels: expected shape ({responses.n_questions},), one entry per question of responses, got {arr.shape}"
        )
    y = arr.astype(np.int64)
    bad = (y < UNLABELLED) | (y >= responses.n_options.astype(np.int64))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"labels: row {row} is {int(y[row])} but its question has {int(responses.n_options[row])} options "
            f"(answer indices 0..{int(responses.n_options[row]) - 1}, or -1 for unlabelled)"
        )
    return y


@dataclass(frozen=True)
class LabelBase:
    """What label calibration reuses from a label-free fit (one per training set).

    Attributes:
        scores: ``(n, M)`` consensus score of every model on every training question (NaN = not asked).
        answers: ``(n, M)`` the training answers.
        subject: ``(n,)`` subject index of each question (into the router's ``subject_names_``).
        niche: ``(n,)`` index of each question's niche (a row of ``centroid_scores``): the nearest
            niche of its own subject.
        centroid_subject: ``(C,)`` subject index of every niche.
        centroid_scores: ``(C, M)`` the label-free niche scores.
        global_scores: ``(M,)`` the label-free global scores.
    """

    scores: np.ndarray
    answers: np.ndarray
    subject: np.ndarray
    niche: np.ndarray
    centroid_subject: np.ndarray
    centroid_scores: np.ndarray
    global_scores: np.ndarray

    @property
    def n_models(self) -> int:
        return int(self.answers.shape[1])


def nearest_niche(
    X: np.ndarray, subject: np.ndarray, centroids: np.ndarray, centroid_subject: np.ndarray
) -> np.ndarray:
    """``(n,)`` index of the nearest centroid (cosine) of each row's own subject."""
    out = np.empty(X.shape[0], dtype=np.int64)
    for s in np.unique(subject):
        rows = np.flatnonzero(subject == s)
        cols = np.flatnonzero(centroid_subject == s)
        idx, _ = kernels.nearest_centroids(
            np.ascontiguousarray(X[rows], dtype=np.float32), np.ascontiguousarray(centroids[cols], dtype=np.float32)
        )
        out[rows] = cols[idx[:, 0]]
    return out


def correctness(answers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(n, M)`` 1.0 where a model chose the label, 0.0 where it chose another option or gave no
    letter, NaN where it was not asked."""
    right = (answers.astype(np.int64) == labels[:, None]).astype(np.float64)
    return np.where(answers == -2, np.nan, right)


def _counts(correct: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group and model: labelled correct answers ``k`` and labelled asked questions ``n``."""
    asked = np.isfinite(correct)
    k = np.zeros((n_groups, correct.shape[1]))
    n = np.zeros_like(k)
    np.add.at(k, group, np.where(asked, correct, 0.0))
    np.add.at(n, group, asked.astype(np.float64))
    return k, n


def _betabinom_logpmf(k: np.ndarray, n: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + betaln(k + alpha, n - k + beta) - betaln(alpha, beta)


def best_kappa(k: np.ndarray, n: np.ndarray, prior: np.ndarray, weights: Optional[np.ndarray] = None) -> float:
    """The prior strength of :data:`KAPPA_GRID` that maximises the (weighted) beta-binomial
    likelihood of the counts ``k`` of ``n`` under beta priors with means ``prior``."""
    mu = np.clip(prior, EPS, 1 - EPS)
    w = np.ones_like(k) if weights is None else weights
    w = np.where(n > 0, w, 0.0)
    ll = [float((w * _betabinom_logpmf(k, n, kap * mu, kap * (1 - mu))).sum()) for kap in KAPPA_GRID]
    return float(KAPPA_GRID[int(np.argmax(ll))])


@dataclass(frozen=True)
class ConsensusPrior:
    """The fitted link between consensus and labelled accuracy (:func:`fit_consensus_prior`).

    Attributes:
        a, b: prior accuracy of a consensus-following model is ``a + b * s`` (``s`` its consensus score).
        kappa: strength (pseudo-counts) of that prior.
        pi: share of models that follow the consensus.
        follows: ``(M,)`` posterior probability ``r_m`` that each model follows the consensus.
        accuracy: ``(M,)`` posterior mean accuracy of each model.
    """

    a: float
    b: float
    kappa: float
    pi: float
    follows: np.ndarray
    accuracy: np.ndarray


def fit_consensus_prior(k: np.ndarray, n: np.ndarray, s: np.ndarray) -> ConsensusPrior:
    """EM fit of the two-component beta-binomial mixture of the module docstring (step 2).

    Args:
        k, n: ``(M,)`` labelled correct answers and labelled questions of each model.
        s: ``(M,)`` mean consensus score of each model.
    """
    M = k.shape[0]
    r = np.ones(M)
    pi = 0.9
    a, b, kappa = 0.0, 1.0, float(KAPPA_GRID[-1])
    log_other = _betabinom_logpmf(k, n, np.ones(M), np.ones(M))
    for _ in range(EM_ITERATIONS):
        w = r * n
        if w.sum() > 0:
            acc = np.where(n > 0, k / np.maximum(n, 1), 0.0)
            sw = (w * s).sum() / w.sum()
            aw = (w * acc).sum() / w.sum()
            var = (w * (s - sw) ** 2).sum()
            # a consensus that ranks against the labels gives no information: slope 0, not negative
            b = float(max((w * (s - sw) * (acc - aw)).sum() / var, 0.0)) if var > 1e-12 else 0.0
            a = float(aw - b * sw)
        mu = np.clip(a + b * s, EPS, 1 - EPS)
        kappa = best_kappa(k, n, mu, r)
        log_follow = _betabinom_logpmf(k, n, kappa * mu, kappa * (1 - mu))
        pi = float(np.clip(r.mean(), 0.5, 1 - 1e-3))
        logit = np.log(pi) - np.log1p(-pi) + log_follow - log_other
        r_new = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        if np.allclose(r_new, r, atol=1e-6):
            r = r_new
            break
        r = r_new
    mu = np.clip(a + b * s, EPS, 1 - EPS)
    follow_mean = (k + kappa * mu) / (n + kappa)
    other_mean = (k + 1.0) / (n + 2.0)
    accuracy = r * follow_mean + (1 - r) * other_mean
    return ConsensusPrior(a=a, b=b, kappa=kappa, pi=pi, follows=r, accuracy=accuracy)


@dataclass(frozen=True)
class LabelFit:
    """Outcome of :func:`calibrate`: the new tables and the fitted quantities behind them.

    Attributes:
        centroid_scores: ``(C, M)`` calibrated niche accuracies.
        global_scores: ``(M,)`` calibrated global accuracies.
        prior: the global :class:`ConsensusPrior`.
        kappa_subject, kappa_niche: prior strengths fitted at the subject and niche levels.
        n_labels: number of labelled questions used.
        spread: ``(M,)`` posterior standard deviation of each global accuracy.
    """

    centroid_scores: np.ndarray
    global_scores: np.ndarray
    prior: ConsensusPrior
    kappa_subject: float
    kappa_niche: float
    n_labels: int
    spread: np.ndarray


def _group_means(values: np.ndarray, group: np.ndarray, n_groups: int, fallback: np.ndarray) -> np.ndarray:
    means = np.asarray(kernels.cluster_means(group, values, n_groups), dtype=np.float64)
    return np.where(np.isfinite(means), means, fallback[None, :])


def _level(k: np.ndarray, n: np.ndarray, parent: np.ndarray, deviation: np.ndarray) -> tuple[np.ndarray, float]:
    """One level of the hierarchy: prior ``parent + deviation`` (clipped), strength by likelihood,
    posterior means."""
    prior = np.clip(parent + deviation, EPS, 1 - EPS)
    kappa = best_kappa(k, n, prior)
    return (k + kappa * prior) / (n + kappa), kappa


def calibrate(base: LabelBase, labels: np.ndarray) -> LabelFit:
    """Calibrated niche and global scores from ``base`` and ``labels`` (``-1`` = unlabelled; at
    least one labelled row), module docstring step 3."""
    rows = np.flatnonzero(labels >= 0)
    correct = correctness(base.answers[rows], labels[rows])
    n_subjects = int(base.centroid_subject.max()) + 1
    n_niches = base.centroid_scores.shape[0]

    k_g, n_g = _counts(correct, np.zeros(rows.size, dtype=np.int64), 1)
    s_global = np.nan_to_num(base.global_scores, nan=0.0)
    prior = fit_consensus_prior(k_g[0], n_g[0], s_global)
    slope = prior.b * prior.follows  # how much of the consensus' own variation each model keeps

    s_subject = _group_means(base.scores, base.subject, n_subjects, s_global)
    k_s, n_s = _counts(correct, base.subject[rows], n_subjects)
    acc_subject, kappa_s = _level(k_s, n_s, prior.accuracy[None, :], slope * (s_subject - s_global[None, :]))

    s_niche = np.nan_to_num(base.centroid_scores, nan=0.0)
    k_c, n_c = _counts(correct, base.niche[rows], n_niches)
    parent = acc_subject[base.centroid_subject]
    acc_niche, kappa_c = _level(k_c, n_c, parent, slope * (s_niche - s_subject[base.centroid_subject]))
    return LabelFit(
        centroid_scores=acc_niche,
        global_scores=prior.accuracy,
        prior=prior,
        kappa_subject=kappa_s,
        kappa_niche=kappa_c,
        n_labels=int(rows.size),
        spread=_posterior_sd(prior, n_g[0]),
    )


def _posterior_sd(prior: ConsensusPrior, n: np.ndarray) -> np.ndarray:
    """Standard deviation of each model's accuracy posterior (its beta strength: labels plus the
    prior's pseudo-counts, mixed by the responsibility)."""
    strength = n + prior.follows * prior.kappa + (1 - prior.follows) * 2.0
    p = prior.accuracy
    return np.sqrt(p * (1 - p) / (strength + 1.0))


# ---------------------------------------------------------------------- active selection
def best_model_probabilities(scores: np.ndarray, spread: np.ndarray, draws: int = 400, seed: int = 0) -> np.ndarray:
    """``(M,)`` probability that each model has the highest accuracy when accuracies are normal
    around ``scores`` with standard deviations ``spread`` (Monte Carlo, seeded)."""
    rng = np.random.default_rng(seed)
    sample = scores[None, :] + spread[None, :] * rng.standard_normal((draws, scores.shape[0]))
    return np.bincount(np.argmax(sample, axis=1), minlength=scores.shape[0]) / draws


def disagreement_value(answers: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(n,)`` weighted share of model pairs that answer each question differently:
    ``sum_{m, m'} w_qm w_qm' [a_qm != a_qm']`` with each row of ``weights`` (``(M,)`` or
    ``(n, M)``) normalised to sum 1 over the models asked (an unparsable answer differs from every
    letter)."""
    A = answers.astype(np.int64)
    asked = A != -2
    W = np.broadcast_to(np.asarray(weights, dtype=np.float64), A.shape)
    W = np.where(asked, W, 0.0)
    W = W / np.maximum(W.sum(axis=1, keepdims=True), 1e-12)
    # sum over pairs = 1 - sum over answer letters of (weight choosing it)^2; unparsable answers
    # each form their own class
    same = (np.where(A == -1, W, 0.0) ** 2).sum(axis=1)
    for c in np.unique(A[A >= 0]):
        same += np.where(A == c, W, 0.0).sum(axis=1) ** 2
    return np.maximum(1.0 - same, 0.0) * (W.sum(axis=1) > 0)


def spread_over_groups(
    value: np.ndarray, groups: np.ndarray, n: int, candidates: np.ndarray, already: Optional[dict] = None
) -> np.ndarray:
    """Up to ``n`` of ``candidates`` (row indices), best first: greedily the highest ``value``
    divided by ``1 + rows of the same group already taken`` (``already``: group -> rows taken
    before; ties -> lower row)."""
    order = candidates[np.lexsort((candidates, -value[candidates]))]
    taken: list[int] = []
    per_group: dict[object, int] = dict(already or {})
    # per group, a queue of its rows by value; each step takes the best head after the discount
    queues: dict[object, list[int]] = {}
    for row in order.tolist():
        queues.setdefault(groups[row], []).append(row)
    heads = {g: 0 for g in queues}
    while len(taken) < n:
        best_g, best_v, best_row = None, -np.inf, -1
        for g, q in queues.items():
            if heads[g] >= len(q):
                continue
            row = q[heads[g]]
            v = value[row] / (1.0 + per_group.get(g, 0))
            if v > best_v or (v == best_v and row < best_row):
                best_g, best_v, best_row = g, v, row
        if best_g is None:
            break
        taken.append(best_row)
        heads[best_g] += 1
        per_group[best_g] = per_group.get(best_g, 0) + 1
    return np.asarray(taken, dtype=np.int64)
