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
from cascal.kernels.routing import RoutingTables

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


def make_label_base(
    X_unit: np.ndarray, responses: ResponseMatrix, scores: np.ndarray, subject_names: list[str], tables: RoutingTables
) -> LabelBase:
    """The :class:`LabelBase` of a label-free fit (subjects ``subject_names``, tables ``tables``) on
    the unit rows ``X_unit`` and their ``responses``, whose consensus scores are ``scores``.

    Raises:
        DataError: ``responses`` has subjects the router was not fitted on.
    """
    subject = np.searchsorted(subject_names, np.asarray(responses.subjects))
    known = np.asarray(subject_names)[np.minimum(subject, len(subject_names) - 1)]
    if not (known == np.asarray(responses.subjects)).all():
        raise DataError("responses: has subjects the router was not fitted on")
    return LabelBase(
        scores=scores,
        answers=np.asarray(responses.answers),
        subject=subject,
        niche=nearest_niche(X_unit, subject, tables.centroids, tables.centroid_subject),
        centroid_subject=tables.centroid_subject,
        centroid_scores=tables.centroid_scores,
        global_scores=tables.global_scores,
    )


def check_base_labels(labels: object, base: LabelBase) -> np.ndarray:
    """``labels`` as an int64 array aligned with the rows ``base`` was built from (``-1`` = unlabelled).

    Raises:
        InvalidParameterError: not an integer array of one entry per row of ``base``.
    """
    y = np.asarray(labels)
    if y.dtype == bool or y.dtype.kind not in "iu" or y.shape != (base.answers.shape[0],):
        raise InvalidParameterError(
            f"labels: expected an integer array of shape ({base.answers.shape[0]},), got {y.dtype} {y.shape}"
        )
    return y.astype(np.int64)


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
    """The prior strength that the labels support: the value of :data:`KAPPA_GRID` maximising the
    (weighted) beta-binomial likelihood of the counts ``k`` of ``n`` under beta priors with means
    ``prior``, kept only when it beats the prior taken as exact (binomial counts with those
    means, ``kappa = inf``) by a likelihood-ratio test at :data:`RELAX_LEVEL`; ``inf`` otherwise
    (the labels do not show that the prior is off, so it is kept as it is)."""
    mu = np.clip(prior, EPS, 1 - EPS)
    w = np.ones_like(k) if weights is None else weights
    w = np.where(n > 0, w, 0.0)
    ll = [float((w * _betabinom_logpmf(k, n, kap * mu, kap * (1 - mu))).sum()) for kap in KAPPA_GRID]
    exact = float((w * (k * np.log(mu) + (n - k) * np.log1p(-mu) + _log_choose(n, k))).sum())
    best = int(np.argmax(ll))
    if 2.0 * (ll[best] - exact) <= RELAX_STATISTIC:
        return float("inf")
    return float(KAPPA_GRID[best])


#: Significance level of the test in :func:`best_kappa` and its statistic: the chi-square(1)
#: quantile ``1 - RELAX_LEVEL`` halved for a parameter on the boundary (``1/kappa = 0``).
RELAX_LEVEL = 0.05
RELAX_STATISTIC = 2.705543454095404  # chi2.ppf(1 - 2 * RELAX_LEVEL, 1)


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def _surplus(k: np.ndarray, n: np.ndarray, expected: np.ndarray, kappa: float) -> np.ndarray:
    """``(k - expected) / (n + kappa)``: the shrunk surplus of correct labels over the expected
    count; 0 when ``kappa`` is inf."""
    if not np.isfinite(kappa):
        return np.zeros_like(k, dtype=np.float64)
    return (k - expected) / (n + kappa)


def posterior_mean(k: np.ndarray, n: np.ndarray, prior: np.ndarray, kappa: float) -> np.ndarray:
    """Beta posterior mean ``(k + kappa * prior) / (n + kappa)``; ``prior`` itself when ``kappa`` is inf."""
    if not np.isfinite(kappa):
        return np.asarray(prior, dtype=np.float64) + 0.0 * k
    return (k + kappa * prior) / (n + kappa)


@dataclass(frozen=True)
class ConsensusPrior:
    """The fitted link between consensus scores and labelled correctness (:func:`fit_consensus_prior`).

    Attributes:
        alpha, beta: a consensus-following model answers question ``q`` right with probability
            ``sigmoid(alpha + beta * logit(s_qm))`` (``s_qm`` its consensus score there).
        kappa: strength (pseudo-counts) of the beta prior of a follower's accuracy around the
            mean of those probabilities.
        pi: share of models that follow the consensus.
        follows: ``(M,)`` posterior probability ``r_m`` that each model follows the consensus.
        accuracy: ``(M,)`` posterior mean accuracy of each model.
        consensus_accuracy: ``(M,)`` the calibrated consensus' own estimate (mean probability).
        own_accuracy: ``(M,)`` the labels' own estimate ``(k + 1) / (n + 2)``.
    """

    alpha: float
    beta: float
    kappa: float
    pi: float
    follows: np.ndarray
    accuracy: np.ndarray
    consensus_accuracy: np.ndarray
    own_accuracy: np.ndarray


def _logit(s: np.ndarray) -> np.ndarray:
    s = np.clip(s, 1e-3, 1 - 1e-3)
    return np.log(s) - np.log1p(-s)


def _fit_link(z: np.ndarray, y: np.ndarray, w: np.ndarray, start: tuple[float, float]) -> tuple[float, float]:
    """Weighted logistic regression ``P(y = 1) = sigmoid(alpha + beta * z)`` (a little ridge on
    ``beta - 1`` and ``alpha`` keeps it defined on separable labels); ``beta >= 0``."""
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = theta[0] + theta[1] * z
        ll = w * (y * eta - np.logaddexp(0.0, eta))
        p = 1.0 / (1.0 + np.exp(-eta))
        g = w * (y - p)
        reg = 0.5 * (theta[0] ** 2 + (theta[1] - 1.0) ** 2)
        grad = -np.array([g.sum(), (g * z).sum()]) + np.array([theta[0], theta[1] - 1.0])
        return float(-ll.sum() + reg), grad

    res = minimize(
        loss, np.asarray(start, dtype=np.float64), jac=True, method="L-BFGS-B", bounds=[(None, None), (0.0, None)]
    )
    return float(res.x[0]), float(res.x[1])


def fit_consensus_prior(correct: np.ndarray, scores_labelled: np.ndarray, scores_all: np.ndarray) -> ConsensusPrior:
    """EM fit of the follower / own-accuracy mixture of the module docstring (step 2).

    Args:
        correct: ``(L, M)`` correctness of every model on the labelled questions (NaN = not asked).
        scores_labelled: ``(L, M)`` consensus scores on those questions.
        scores_all: ``(n, M)`` consensus scores on every training question (NaN = not asked).
    """
    M = correct.shape[1]
    asked = np.isfinite(correct) & np.isfinite(scores_labelled)
    y = np.where(asked, correct, 0.0)
    z = _logit(np.nan_to_num(scores_labelled, nan=0.5))
    k, n = y.sum(axis=0), asked.sum(axis=0).astype(np.float64)
    # own accuracy: uniform prior, so the marginal likelihood of the model's sequence is B(k+1, n-k+1)
    log_own = betaln(k + 1.0, n - k + 1.0)
    r, pi = np.ones(M), 0.9
    alpha, beta = 0.0, 1.0
    for _ in range(EM_ITERATIONS):
        weights = np.where(asked, r[None, :], 0.0)
        alpha, beta = _fit_link(z[asked], y[asked], weights[asked], (alpha, beta))
        eta = alpha + beta * z
        log_follow = np.where(asked, y * eta - np.logaddexp(0.0, eta), 0.0).sum(axis=0)
        pi = float(np.clip(r.mean(), 0.5, 1 - 1e-3))
        logit = np.log(pi) - np.log1p(-pi) + log_follow - log_own
        r_new = 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))
        done = np.allclose(r_new, r, atol=1e-6)
        r = r_new
        if done:
            break
    consensus_acc = np.nan_to_num(np.nanmean(link_probability(scores_all, alpha, beta), axis=0), nan=0.5)
    # a follower's labels correct its calibrated accuracy by their surplus over what the link
    # expects on the labelled questions themselves (so labels chosen among hard questions are
    # compared with hard-question expectations), shrunk by a strength fitted on the labels
    expected = np.where(asked, 1.0 / (1.0 + np.exp(-(alpha + beta * z))), 0.0).sum(axis=0)
    if looks_random(scores_labelled, scores_all):
        # labels that look like a random sample of the training questions are compared with the
        # training mean instead: unbiased then, and robust to a link that misfits one model
        expected = n * consensus_acc
    kappa = best_kappa(k, n, np.where(n > 0, expected / np.maximum(n, 1), 0.5), r)
    follower = consensus_acc + _surplus(k, n, expected, kappa)
    own = (k + 1.0) / (n + 2.0)
    r = overrule_contradicted(y, asked, r, follower, own)
    return ConsensusPrior(
        alpha=alpha,
        beta=beta,
        kappa=kappa,
        pi=pi,
        follows=r,
        accuracy=r * follower + (1 - r) * own,
        consensus_accuracy=consensus_acc,
        own_accuracy=own,
    )


#: Level of the two-sided test of :func:`looks_random`.
RANDOM_SAMPLE_LEVEL = 0.05


def _ease(scores: np.ndarray) -> np.ndarray:
    """How sure the pool is of each question's plurality: its largest consensus score."""
    finite = np.isfinite(scores)
    return np.where(finite.any(axis=1), np.nanmax(np.where(finite, scores, -np.inf), axis=1), 0.0)


def looks_random(scores_labelled: np.ndarray, scores_all: np.ndarray) -> bool:
    """Whether the labelled questions could be a uniform sample of the training questions: their
    mean ease (:func:`_ease`) is within the two-sided :data:`RANDOM_SAMPLE_LEVEL` z-test of the
    training mean (labels chosen on the answers, e.g. by :meth:`suggest_labels`, are not)."""
    from scipy.stats import norm

    ease_all = _ease(scores_all)
    n = scores_labelled.shape[0]
    sd = float(ease_all.std())
    if n == 0 or sd == 0:
        return True
    z = (float(_ease(scores_labelled).mean()) - float(ease_all.mean())) / (sd / np.sqrt(n))
    return bool(abs(z) <= norm.ppf(1 - RANDOM_SAMPLE_LEVEL / 2))


#: Level of the one-sided sign test of :func:`overrule_contradicted`.
CONTRADICTION_LEVEL = 0.05


def overrule_contradicted(
    y: np.ndarray, asked: np.ndarray, r: np.ndarray, follower: np.ndarray, own: np.ndarray
) -> np.ndarray:
    """Responsibilities after the decision check: while some model beats the estimated best one
    on the labelled questions where exactly one of the two is right, significantly (one-sided sign
    test at :data:`CONTRADICTION_LEVEL`, Bonferroni-corrected for the ``M - 1`` challengers), the
    most significant such model is taken at its own
    labelled accuracy (``r = 0``). The per-question link can fit a small label sample while
    missing where a strong model dissents; the labels' direct comparison of the two models the
    routing decision is about then overrules it."""
    from scipy.stats import binomtest

    r = r.copy()
    level = CONTRADICTION_LEVEL / max(r.size - 1, 1)
    for _ in range(r.size):
        acc = r * follower + (1 - r) * own
        top = int(np.argmax(acc))
        best_p, challenger = level, -1
        for m in range(r.size):
            if m == top or r[m] == 0.0:
                continue
            both = asked[:, m] & asked[:, top]
            wins = int((both & (y[:, m] > y[:, top])).sum())
            losses = int((both & (y[:, m] < y[:, top])).sum())
            if wins > losses:
                p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue
                if p < best_p:
                    best_p, challenger = p, m
        if challenger < 0:
            break
        r[challenger] = 0.0
    return r


def link_probability(scores: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``sigmoid(alpha + beta * logit(scores))``, NaN where ``scores`` is NaN."""
    eta = alpha + beta * _logit(np.nan_to_num(scores, nan=0.5))
    return np.where(np.isfinite(scores), 1.0 / (1.0 + np.exp(-eta)), np.nan)


@dataclass(frozen=True)
class LabelFit:
    """Outcome of :func:`calibrate`: the new tables and the fitted quantities behind them.

    Attributes:
        centroid_scores: ``(C, M)`` calibrated niche scores.
        global_scores: ``(M,)`` calibrated global scores.
        prior: the global :class:`ConsensusPrior`.
        kappa_subject, kappa_niche: prior strengths fitted at the subject and niche levels.
        n_labels: number of labelled questions used.
        spread: ``(M,)`` posterior standard deviation of each global score.
        accuracy: ``(C, M)`` calibrated niche accuracies (``centroid_scores`` are these in
            consensus-score units).
        worth: accuracy points per consensus-score point used for that conversion.
    """

    centroid_scores: np.ndarray
    global_scores: np.ndarray
    prior: ConsensusPrior
    kappa_subject: float
    kappa_niche: float
    n_labels: int
    spread: np.ndarray
    accuracy: np.ndarray
    worth: float


def _group_means(values: np.ndarray, group: np.ndarray, n_groups: int, fallback: np.ndarray) -> np.ndarray:
    means = np.asarray(kernels.cluster_means(group, values, n_groups), dtype=np.float64)
    return np.where(np.isfinite(means), means, fallback[None, :])


#: Fewest labels of one model in one subject (niche) for that cell's labels to count at the subject
#: (niche) level: with fewer, the accuracy measured there has a standard error above 0.15, wider
#: than the gaps between the models a routing decision weighs, so the cell keeps the level above.
MIN_CELL_LABELS = 10


def _level(correct: np.ndarray, expected: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, float]:
    """One level of the hierarchy: per group and model, the shrunk surplus of the labels over the
    per-question expectations ``expected`` (``(L, M)``, on the labelled rows), with one strength
    fitted on the cells with at least :data:`MIN_CELL_LABELS` labels (:func:`best_kappa`); 0 in
    the other cells."""
    k, n = _counts(correct, group, n_groups)
    e = np.zeros_like(k)
    np.add.at(e, group, np.where(np.isfinite(correct), expected, 0.0))
    enough = n >= MIN_CELL_LABELS
    k, n, e = np.where(enough, k, 0.0), np.where(enough, n, 0.0), np.where(enough, e, 0.0)
    kappa = best_kappa(k, n, np.where(n > 0, e / np.maximum(n, 1), 0.5)) if enough.any() else float("inf")
    return _surplus(k, n, e, kappa), kappa


def calibrate(base: LabelBase, labels: np.ndarray) -> LabelFit:
    """Calibrated niche and global scores from ``base`` and ``labels`` (``-1`` = unlabelled; at
    least one labelled row), module docstring step 3."""
    rows = np.flatnonzero(labels >= 0)
    correct = correctness(base.answers[rows], labels[rows])
    n_subjects = int(base.centroid_subject.max()) + 1
    n_niches = base.centroid_scores.shape[0]
    prior = fit_consensus_prior(correct, base.scores[rows], base.scores)
    r = prior.follows

    # per question, the probability that each model is right before the level's own labels:
    # followers: the calibrated consensus, shifted by the labels' correction of their global level;
    # the others: their global accuracy
    shift = prior.accuracy - prior.consensus_accuracy
    link = link_probability(base.scores, prior.alpha, prior.beta)
    per_question = r[None, :] * (link + shift[None, :]) + (1 - r[None, :]) * prior.accuracy[None, :]
    per_question = np.where(np.isfinite(link), per_question, np.nan)

    # subject and niche levels: the labels' surplus over these per-question expectations
    labelled = per_question[rows]
    surplus_s, kappa_s = _level(correct, labelled, base.subject[rows], n_subjects)
    q_niche = _group_means(per_question, base.niche, n_niches, prior.accuracy)
    # the niche level compares with expectations that include the subject's correction
    labelled_s = labelled + surplus_s[base.subject[rows]]
    surplus_c, kappa_c = _level(correct, labelled_s, base.niche[rows], n_niches)
    acc_niche = np.clip(q_niche + surplus_s[base.centroid_subject] + surplus_c, 0.0, 1.0)
    k_g, n_g = _counts(correct, np.zeros(rows.size, dtype=np.int64), 1)

    # back to consensus-score units, so that routing (score_temp) sees tables of the label-free
    # scale: label-free scores plus the labels' correction of the calibrated consensus' own
    # estimate, divided by how many accuracy points a consensus-score point is worth
    link_niche = _group_means(link, base.niche, n_niches, prior.consensus_accuracy)
    free_niche = np.nan_to_num(base.centroid_scores, nan=0.0)
    free_global = np.nan_to_num(base.global_scores, nan=0.0)
    worth = _slope(free_niche.ravel(), link_niche.ravel())
    centroid_scores = free_niche + (acc_niche - link_niche) / worth
    global_scores = free_global + (prior.accuracy - prior.consensus_accuracy) / worth
    return LabelFit(
        centroid_scores=centroid_scores,
        global_scores=global_scores,
        prior=prior,
        kappa_subject=kappa_s,
        kappa_niche=kappa_c,
        n_labels=int(rows.size),
        spread=_posterior_sd(prior, n_g[0]) / worth,
        accuracy=acc_niche,
        worth=worth,
    )


#: Smallest accuracy points per consensus-score point (:func:`calibrate`); a flatter link means
#: the consensus carries almost no information and the correction would be blown up.
MIN_WORTH = 0.1


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``x``, at least :data:`MIN_WORTH`."""
    dx = x - x.mean()
    var = float((dx * dx).sum())
    slope = float((dx * (y - y.mean())).sum() / var) if var > 0 else 0.0
    return max(slope, MIN_WORTH)


def _posterior_sd(prior: ConsensusPrior, n: np.ndarray) -> np.ndarray:
    """Standard deviation of each model's accuracy posterior (its beta strength: labels plus the
    prior's pseudo-counts, mixed by the responsibility)."""
    strength = n + prior.follows * min(prior.kappa, 1e6) + (1 - prior.follows) * 2.0
    p = prior.accuracy
    return np.sqrt(p * (1 - p) / (strength + 1.0))


# ---------------------------------------------------------------------- active selection
def best_model_probabilities(scores: np.ndarray, spread: np.ndarray, draws: int = 400, seed: int = 0) -> np.ndarray:
    """``(M,)`` probability that each model has the highest accuracy when accuracies are normal
    around ``scores`` with standard deviations ``spread`` (Monte Carlo, seeded)."""
    rng = np.random.default_rng(seed)
    sample = scores[None, :] + spread[None, :] * rng.standard_normal((draws, scores.shape[0]))
    return np.bincount(np.argmax(sample, axis=1), minlength=scores.shape[0]) / draws


def score_spread(global_scores: np.ndarray, fit: Optional[LabelFit]) -> tuple[np.ndarray, np.ndarray]:
    """A router's global scores (NaN read as 0) and their uncertainty: the posterior standard
    deviation after labels (``fit``); label-free, the range of the scores between models (the
    consensus may misrank any model: a lone strong model can sit at the bottom of it)."""
    scores = np.nan_to_num(np.asarray(global_scores, dtype=np.float64), nan=0.0)
    if fit is None:
        return scores, np.full(scores.shape, float(np.ptp(scores)) + 1e-6)
    return scores, fit.spread


#: A model whose probability of being the best (:func:`best_model_probabilities`) reaches this is a
#: candidate for the routing decision in :func:`rows_to_label`.
PLAUSIBLE_BEST = 0.01


def candidates_differ(answers: np.ndarray, candidates: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``(n,)`` whether the ``candidates`` (``(M,)`` bool) and each row's ``first`` model, those of
    them asked there, do not all give the same answer (an unparsable answer counts as one answer:
    wrong for every label)."""
    A = answers.astype(np.int64)
    take = np.broadcast_to(candidates, A.shape).copy()
    take[np.arange(A.shape[0]), first] = True
    take &= A != -2
    low = np.where(take, A, np.iinfo(np.int64).max).min(axis=1)
    high = np.where(take, A, np.iinfo(np.int64).min).max(axis=1)
    return (take.sum(axis=1) > 1) & (low != high)


def stratified_sample(
    eligible: np.ndarray, subjects: np.ndarray, n: int, labelled: np.ndarray, seed: int
) -> np.ndarray:
    """Up to ``n`` unlabelled rows, first a uniform sample of the ``eligible`` ones stratified by
    subject (each pick goes to the subject furthest below its share of the eligible rows, counting
    the labelled eligible rows as taken; within a subject, a seeded random order), then, when those
    run out, the other unlabelled rows the same way."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(eligible.shape[0])
    _, subject_idx = np.unique(subjects, return_inverse=True)
    picks: list[int] = []
    for pool in (eligible, ~eligible):
        size = np.bincount(subject_idx[pool], minlength=subject_idx.max() + 1).astype(np.float64)
        taken = np.bincount(subject_idx[pool & labelled], minlength=size.size).astype(np.float64)
        queues = [
            [int(r) for r in order if pool[r] and not labelled[r] and subject_idx[r] == s] for s in range(size.size)
        ]
        heads = np.zeros(size.size, dtype=np.int64)
        total = taken.sum()
        while len(picks) < n:
            open_s = np.array([heads[s] < len(queues[s]) for s in range(size.size)])
            if not open_s.any():
                break
            deficit = np.where(open_s, size / size.sum() * (total + 1) - taken, -np.inf)
            s = int(np.argmax(deficit))
            picks.append(queues[s][heads[s]])
            heads[s] += 1
            taken[s] += 1
            total += 1
    return np.asarray(picks, dtype=np.int64)


def rows_to_label(
    responses: ResponseMatrix,
    probs: np.ndarray,
    spread: tuple[np.ndarray, np.ndarray],
    labelled: np.ndarray,
    n: int,
    seed: int,
) -> np.ndarray:
    """Up to ``n`` rows of ``responses`` worth labelling next, best first
    (docs/algorithm.md#choosing-questions-to-label).

    The candidates for the routing decision are the models whose probability of being the best
    overall (:func:`best_model_probabilities` of ``spread``, :func:`score_spread`, with ``seed``)
    reaches :data:`PLAUSIBLE_BEST`, plus each row's first choice under its routing distribution
    ``probs`` ``(n_q, M)``. A label can only change a decision on a row where they do not all answer
    alike (:func:`candidates_differ`); the picks are a uniform sample of those rows, stratified by
    subject (:func:`stratified_sample`, seeded by ``seed``), skipping the ``labelled`` rows. A
    uniform sample keeps every comparison of two candidates unbiased up to scale: the rows
    left out are the ones where they agree.
    """
    mean, sd = spread
    best = best_model_probabilities(mean, sd, seed=seed)
    eligible = candidates_differ(responses.answers, best >= PLAUSIBLE_BEST, np.argmax(probs, axis=1))
    return stratified_sample(eligible, np.asarray(responses.subjects), int(n), labelled, seed)
