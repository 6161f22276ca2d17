"""Which router the labels pay for: a choice by estimated accuracy (docs/algorithm.md#labels).

A label set can be used in several ways, and which one is best depends on the pool and on how many
labels there are. :func:`choose` builds four candidate routing tables from one label-free fit and
the labels, and keeps the one whose **cross-validated top-1 accuracy on the labelled rows** is
highest:

* ``label-free`` — the consensus tables as fitted (the labels are not used);
* ``calibrated`` — the consensus tables calibrated with the labels (:func:`cascal.router.labels.calibrate`);
* ``best-on-labels`` — the model with the most correct labelled answers first everywhere (ties: the
  higher label-free global score);
* ``subject-best`` — per subject, the model with the most correct labelled answers of that subject,
  each model's subject count shrunk toward its global labelled accuracy with
  :data:`SUBJECT_PSEUDO_LABELS` pseudo-labels (a subject with few labels follows the global pick).

A candidate's top-1 on a training row is the best model of the row's niche in its tables (the
niche the label calibration also uses, :class:`cascal.router.labels.LabelBase`). Scores:
``label-free`` is fitted on nothing, so its accuracy on all labelled rows is already out of sample;
``best-on-labels`` and ``subject-best`` are scored leave-one-out (exact, from the counts);
``calibrated`` by :data:`CV_FOLDS`-fold cross-validation (a fixed, seeded fold assignment).

A default candidate is kept unless another beats its score by more than a margin of standard
errors of the difference (:func:`decide`): the default is ``label-free`` with margin
:data:`SWITCH_Z` when the trust diagnostic trusts the label-free fit, and
:data:`UNTRUSTED_DEFAULT` (``best-on-labels``, the simplest candidate that uses the labels) with
margin :data:`UNTRUSTED_Z` when it does not. The standard error is read from the unlabelled
training answers: two routers' top-1 correctness can only differ on rows where their top-1 answers
differ, so the variance of the mean difference on ``L`` labelled rows is at most ``p / L``, ``p``
the share of rows on which the two routers give different answers: read on the unlabelled training
rows of each labelled row's subject (exact without labels, no independence assumption), or on the
labelled rows themselves when they hold more such rows (labels chosen where
the models disagree, as :meth:`~cascal.router.CascalRouter.suggest_labels` does). Among the
candidates that pass, the highest score wins (ties: the order above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cascal.router.labels import LabelBase, LabelFit, calibrate, correctness

#: Candidate names, in the order that breaks ties.
CANDIDATES = ("label-free", "calibrated", "best-on-labels", "subject-best")
#: Folds of the cross-validation of the ``calibrated`` candidate.
CV_FOLDS = 5
#: Seed of the fold assignment (the choice is deterministic for a label set).
CV_SEED = 0
#: A candidate must beat the label-free score by this many standard errors of the difference when
#: the trust diagnostic trusts the label-free fit (the smallest margin that keeps the design pools
#: ``large`` and ``small`` within 0.5 points of label-free at every budget, docs/labelling.md).
SWITCH_Z = 1.5
#: The margin when the trust diagnostic does not trust the label-free fit
#: (:mod:`cascal.router.diagnostics`), over :data:`UNTRUSTED_DEFAULT` instead of ``label-free``: the
#: same margin, no second constant (checked, not set, on the ``lone-strong`` pools of crowd draws 0
#: and 1: docs/labelling.md#what-labels-pay).
UNTRUSTED_Z = SWITCH_Z
#: The candidate kept when the label-free fit is not trusted and no other beats it by
#: :data:`UNTRUSTED_Z` standard errors: the simplest one that uses the labels. ``calibrated`` and
#: ``subject-best`` fit more on fewer labels, and their held-out scores are noisier (calibrated's
#: 5-fold refits see 80 % of the labels and are scored on a fifth each), so on 10-20 labels they
#: tie it on held-out score while routing worse on test; they must now beat it, not just tie.
UNTRUSTED_DEFAULT = "best-on-labels"
#: Pseudo-labels at the global labelled accuracy added to every subject count of ``subject-best``.
SUBJECT_PSEUDO_LABELS = 5.0
#: Fewest labelled rows for a choice; with fewer the label-free tables are kept.
MIN_LABELS = 4
#: How far above the row maximum a forced model is put in the tables (consensus-score units).
FORCE_MARGIN = 1.0


@dataclass(frozen=True)
class LabelChoice:
    """The outcome of :func:`choose`, kept in ``router.diagnostics_.labels``.

    Attributes:
        chosen: the candidate whose tables the router uses (one of :data:`CANDIDATES`).
        scores: candidate -> cross-validated top-1 accuracy on the labelled rows.
        standard_errors: candidate -> standard error of its score's difference from ``label-free``
            (from the share of training rows where their top-1 answers differ).
        n_labels: labelled rows used.
        reason: one line saying why ``chosen`` won.
        pair_errors: ``(a, b)`` -> standard error of the difference of the scores of two candidates
            that use the labels (both orders; the same estimate as ``standard_errors``, with the
            share of training rows where the two candidates' models answer differently).
    """

    chosen: str
    scores: dict[str, float]
    standard_errors: dict[str, float]
    n_labels: int
    reason: str
    pair_errors: dict[tuple[str, str], float] = field(default_factory=dict)


@dataclass(frozen=True)
class ChosenTables:
    """Tables of the chosen candidate, the calibration behind ``calibrated``, the choice and every
    candidate's ``(centroid_scores, global_scores)`` (``tables``, for evaluations)."""

    centroid_scores: np.ndarray
    global_scores: np.ndarray
    fit: LabelFit
    choice: LabelChoice
    tables: dict[str, tuple[np.ndarray, np.ndarray]]


def _niche_top1(centroid_scores: np.ndarray, niche: np.ndarray) -> np.ndarray:
    """Top-1 model of each row's niche (NaN scores rank last)."""
    table = np.nan_to_num(centroid_scores, nan=-np.inf)
    return np.argmax(table, axis=1)[niche]


def _forced(centroid_scores: np.ndarray, global_scores: np.ndarray, pick: np.ndarray, subject_of_niche: np.ndarray):
    """Copies of the tables where, in every niche, the model ``pick[subject of the niche]`` is first
    (and ``pick[-1]`` first globally); the other models keep their order."""
    c = np.nan_to_num(np.asarray(centroid_scores, dtype=np.float64), nan=0.0).copy()
    g = np.nan_to_num(np.asarray(global_scores, dtype=np.float64), nan=0.0).copy()
    rows = np.arange(c.shape[0])
    c[rows, pick[subject_of_niche]] = c.max(axis=1) + FORCE_MARGIN
    g[pick[-1]] = g.max() + FORCE_MARGIN
    return c, g


def _best(correct_counts: np.ndarray, tiebreak: np.ndarray) -> int:
    """Index of the highest count; ties: the highest ``tiebreak``, then the first column."""
    return int(np.lexsort((np.arange(correct_counts.size), -tiebreak, -correct_counts))[0])


def _subject_counts(
    right: np.ndarray, asked: np.ndarray, subject: np.ndarray, n_subjects: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(S, M)`` correct and asked labelled answers per subject and model."""
    ks = np.zeros((n_subjects, right.shape[1]))
    ns = np.zeros_like(ks)
    np.add.at(ks, subject, right)
    np.add.at(ns, subject, asked.astype(np.float64))
    return ks, ns


def _subject_pick(ks: np.ndarray, ns: np.ndarray, k: np.ndarray, n: np.ndarray, tiebreak: np.ndarray) -> int:
    """``subject-best``'s pick in one subject from its counts ``ks``/``ns`` and the global counts
    ``k``/``n``: the subject's counts shrunk toward the global labelled accuracy, or the global pick
    when the subject has no label."""
    if ns.max() <= 0:
        return _best(k, tiebreak)
    acc = (k + 1.0) / (n + 2.0)
    return _best((ks + SUBJECT_PSEUDO_LABELS * acc) / (ns + SUBJECT_PSEUDO_LABELS), tiebreak)


def _subject_picks(
    right: np.ndarray, asked: np.ndarray, subject: np.ndarray, n_subjects: int, tiebreak: np.ndarray
) -> np.ndarray:
    """``(n_subjects + 1,)`` per-subject pick of ``subject-best`` (the last entry: the global pick)."""
    k, n = right.sum(axis=0), asked.sum(axis=0).astype(np.float64)
    ks, ns = _subject_counts(right, asked, subject, n_subjects)
    picks = np.empty(n_subjects + 1, dtype=np.int64)
    picks[-1] = _best(k, tiebreak)
    for s in range(n_subjects):
        picks[s] = _subject_pick(ks[s], ns[s], k, n, tiebreak)
    return picks


def _loo_single(right: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Leave-one-out pick of ``best-on-labels`` for every labelled row."""
    k = right.sum(axis=0)
    return np.array([_best(k - right[i], tiebreak) for i in range(right.shape[0])], dtype=np.int64)


def _loo_subject(
    right: np.ndarray, asked: np.ndarray, subject: np.ndarray, n_subjects: int, tiebreak: np.ndarray
) -> np.ndarray:
    """Leave-one-out pick of ``subject-best`` for every labelled row: the counts without that row
    (exact: they are whole numbers), in its own subject."""
    k, n = right.sum(axis=0), asked.sum(axis=0).astype(np.float64)
    ks, ns = _subject_counts(right, asked, subject, n_subjects)
    out = np.empty(right.shape[0], dtype=np.int64)
    for i in range(right.shape[0]):
        s, r, a = subject[i], right[i], asked[i]
        out[i] = _subject_pick(ks[s] - r, ns[s] - a, k - r, n - a, tiebreak)
    return out


def _folds(n: int) -> np.ndarray:
    """Fold of each of ``n`` labelled rows (:data:`CV_FOLDS` folds, seeded permutation)."""
    order = np.random.default_rng(CV_SEED).permutation(n)
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % min(CV_FOLDS, n)
    return fold


def _cv_calibrated(base: LabelBase, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``CV_FOLDS``-fold pick of ``calibrated`` for every labelled row (calibrated on the other folds)."""
    fold = _folds(rows.size)
    out = np.empty(rows.size, dtype=np.int64)
    for f in np.unique(fold):
        train = labels.copy()
        held = np.flatnonzero(fold == f)
        train[rows[held]] = -1
        table = calibrate(base, train).centroid_scores if (train >= 0).any() else base.centroid_scores
        out[held] = _niche_top1(table, base.niche[rows[held]])
    return out


def _differ_share(base: LabelBase, free_top: np.ndarray, n_subjects: int) -> np.ndarray:
    """``(S, M)`` share of the training rows of each subject where model ``m``'s answer differs
    from the label-free top-1 answer (an unparsable or missing answer differs from every answer)."""
    answers = base.answers.astype(np.int64)
    free_answer = answers[np.arange(answers.shape[0]), free_top]
    differ = ((answers != free_answer[:, None]) | (answers < 0) | (free_answer[:, None] < 0)).astype(np.float64)
    total = np.zeros((n_subjects, answers.shape[1]))
    np.add.at(total, base.subject, differ)
    count = np.bincount(base.subject, minlength=n_subjects).astype(np.float64)
    return total / np.maximum(count, 1.0)[:, None]


def _pair_errors(
    base: LabelBase, rows: np.ndarray, subject: np.ndarray, n_subjects: int, picks: dict[str, np.ndarray]
) -> dict[tuple[str, str], float]:
    """Standard error of the score difference of every two candidates that use the labels: on a
    labelled row two picks can only differ in correctness where their models' answers differ; the
    share of such rows is read on the training rows of the row's subject (model against model), or
    on the labelled rows themselves when they hold more such rows."""
    answers = base.answers.astype(np.int64)
    n_models = answers.shape[1]
    missing = answers < 0
    # (S, M, M) share of each subject's training rows where two models' answers differ
    differ = np.zeros((n_subjects, n_models, n_models))
    for s in range(n_subjects):
        a, miss = answers[base.subject == s], missing[base.subject == s]
        if a.shape[0]:
            d = (a[:, :, None] != a[:, None, :]) | miss[:, :, None] | miss[:, None, :]
            differ[s] = d.mean(axis=0)
    labelled = answers[rows]
    at = np.arange(rows.size)
    out: dict[tuple[str, str], float] = {}
    names = [n for n in CANDIDATES if n != "label-free"]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pa, pb = picks[a], picks[b]
            other = pa != pb
            expected = np.where(other, differ[subject, pa, pb], 0.0).mean()
            seen_differ = (labelled[at, pa] != labelled[at, pb]) | (labelled[at, pa] < 0) | (labelled[at, pb] < 0)
            seen = (other & seen_differ).mean()
            out[(a, b)] = out[(b, a)] = _difference_error(expected, seen, rows.size)
    return out


def _difference_error(expected_share: float, seen_share: float, n_labels: int) -> float:
    """Standard error of a difference of two held-out top-1 means on ``n_labels`` rows whose
    correctness can differ only on the share of rows where the two picks answer differently: the
    larger of that share read on the training rows and on the labelled rows (module docstring)."""
    return float(np.sqrt(max(expected_share, seen_share) / n_labels))


def decide(
    scores: dict[str, float],
    errors: dict[str, float],
    pair_errors: dict[tuple[str, str], float],
    n_labels: int,
    *,
    trusted: bool,
    z: float = SWITCH_Z,
    z_untrusted: float = UNTRUSTED_Z,
    untrusted_default: str = UNTRUSTED_DEFAULT,
) -> tuple[str, str]:
    """The candidate :func:`choose` keeps from the held-out ``scores`` and standard errors, and the
    reason: a default (``label-free`` when the label-free fit is trusted, else
    ``untrusted_default``) is replaced by the highest-scoring candidate that beats it by more than
    ``z`` (``z_untrusted``) standard errors of the difference (ties: the order of
    :data:`CANDIDATES`). The defaults are the committed rule; the grid bench passes others."""
    default = "label-free" if trusted else untrusted_default
    margin = z if trusted else z_untrusted

    def error(a: str, b: str) -> float:
        if a == b:
            return 0.0
        if "label-free" in (a, b):
            return errors[b if a == "label-free" else a]
        return pair_errors[(a, b)]

    passing = [n for n in CANDIDATES if n != default and scores[n] - scores[default] > margin * error(n, default)]
    note = "" if trusted else ", the label-free fit is not trusted"
    if passing:
        chosen = max(passing, key=lambda n: (scores[n], -CANDIDATES.index(n)))
        return chosen, (
            f"{chosen} scores {100 * scores[chosen]:.1f} % top-1 on {n_labels} held-out labels against "
            f"{100 * scores[default]:.1f} % {default} (margin {margin:g} x standard error "
            f"{100 * error(chosen, default):.1f} points{note})"
        )
    return default, (
        f"no candidate beats the {default} {100 * scores[default]:.1f} % top-1 on {n_labels} "
        f"held-out labels by {margin:g} standard errors{note}"
    )


def choose(
    base: LabelBase, labels: np.ndarray, fit: Optional[LabelFit] = None, *, trusted: bool = True
) -> ChosenTables:
    """The candidate tables :func:`decide` keeps from the held-out top-1 accuracy on the labelled
    rows (module docstring); ``fit`` is ``calibrate(base, labels)`` when already computed;
    ``trusted``: whether the trust diagnostic trusts the label-free fit (default ``label-free``,
    margin :data:`SWITCH_Z`; else :data:`UNTRUSTED_DEFAULT`, margin :data:`UNTRUSTED_Z`)."""
    rows = np.flatnonzero(labels >= 0)
    fit = calibrate(base, labels) if fit is None else fit
    correct = correctness(base.answers[rows], labels[rows])
    asked = np.isfinite(correct)
    right = np.where(asked, correct, 0.0)
    n_subjects = int(base.centroid_subject.max()) + 1
    subject = base.subject[rows]
    tiebreak = np.nan_to_num(np.asarray(base.global_scores, dtype=np.float64), nan=-np.inf)
    free_c, free_g = base.centroid_scores, base.global_scores
    single = _best(right.sum(axis=0), tiebreak)
    picks = _subject_picks(right, asked, subject, n_subjects, tiebreak)
    tables = {
        "label-free": (free_c, free_g),
        "calibrated": (fit.centroid_scores, fit.global_scores),
        "best-on-labels": _forced(free_c, free_g, np.full(n_subjects + 1, single), base.centroid_subject),
        "subject-best": _forced(free_c, free_g, picks, base.centroid_subject),
    }
    if rows.size < MIN_LABELS:
        choice = LabelChoice(
            "label-free", {}, {}, int(rows.size), f"fewer than {MIN_LABELS} labels: the label-free tables are kept"
        )
        return ChosenTables(free_c, free_g, fit, choice, tables)

    # each candidate's held-out pick on every labelled row: fitted on the other labelled rows
    free_pick = _niche_top1(free_c, base.niche[rows])
    picks_held = {
        "label-free": free_pick,
        # calibrated tables that route like the label-free ones at top-1 need no cross-validation:
        # choosing them would change no first choice
        "calibrated": free_pick
        if np.array_equal(
            _niche_top1(fit.centroid_scores, np.arange(free_c.shape[0])),
            _niche_top1(free_c, np.arange(free_c.shape[0])),
        )
        else _cv_calibrated(base, labels, rows),
        "best-on-labels": _loo_single(right, tiebreak),
        "subject-best": _loo_subject(right, asked, subject, n_subjects, tiebreak),
    }
    every = np.arange(rows.size)
    scores = {name: float(right[every, pick].mean()) for name, pick in picks_held.items()}
    # standard error of a difference from label-free: on a labelled row the two picks can only
    # differ in correctness where their answers differ; how often that is comes from the
    # unlabelled training rows of the row's subject, or from the labelled rows themselves when
    # they hold more such rows (labels chosen where the models disagree)
    differ = _differ_share(base, _niche_top1(free_c, base.niche), n_subjects)
    free_answer = base.answers[rows, free_pick]
    errors = {}
    for name, pick in picks_held.items():
        expected = np.where(pick == free_pick, 0.0, differ[subject, pick]).mean()
        seen = np.where(pick == free_pick, False, (base.answers[rows, pick] != free_answer) | (free_answer < 0)).mean()
        errors[name] = _difference_error(expected, seen, rows.size)
    pair_errors = _pair_errors(base, rows, subject, n_subjects, picks_held)
    chosen, reason = decide(scores, errors, pair_errors, rows.size, trusted=trusted)
    c, g = tables[chosen]
    choice = LabelChoice(chosen, scores, errors, int(rows.size), reason, pair_errors)
    return ChosenTables(c, g, fit, choice, tables)
