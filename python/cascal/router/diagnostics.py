"""How far to trust a label-free fit, from the answers alone (docs/algorithm.md#trust-diagnostic).

The consensus ranks models by agreement with the pool. It goes wrong when a model is *competent*
(it agrees with the pool wherever the pool is nearly unanimous, i.e. on the questions whose answer
is near certain) yet *dissents* often where the pool is split: then either the model is wrong on
the hard questions, or it is a strong model that a correlated crowd outvotes. Answers alone cannot
tell which; a few labels can. :func:`diagnose` flags that pattern.

For every model ``m``, with the other models' votes (leave-one-out, so a model does not vote for
itself): the *easy* questions are those whose leave-one-out agreement reaches
:data:`EASY_AGREEMENT`; ``easy_m`` = share of them where ``m`` gives the leave-one-out plurality
answer, ``hard_m`` = the same share on the other questions. The consensus favourite ``top`` is the
model with the highest global consensus score. A model ``m`` is a *rival* of ``top`` when it is at
least as reliable on the easy questions (``easy_m >= easy_top - EASY_MARGIN``) but agrees less on
the hard ones: the disagreement at stake is ``gap_m = hard_top - hard_m`` times the share of hard
questions; ``1 - max_m stake_m / STAKE_SCALE`` (clipped to ``[0, 1]``) below :data:`TRUST_THRESHOLD`
flags the fit. It is also flagged when the plurality is weakly supported: no answer has a majority
on at least :data:`SPLIT_LIMIT` of the questions. The trust score is the smaller of the rival
score and one minus that share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from cascal.data import ResponseMatrix

if TYPE_CHECKING:
    from cascal.router.label_choice import LabelChoice

#: Leave-one-out agreement from which a question counts as easy (its plurality answer near certain).
EASY_AGREEMENT = 0.8
#: A rival must agree with the easy pluralities at least this nearly as often as the favourite.
EASY_MARGIN = 0.02
#: Share of all questions at stake that takes the trust score to 0.
STAKE_SCALE = 0.2
#: Trust below which the diagnostic recommends labels.
TRUST_THRESHOLD = 0.75
#: Share of questions without a majority answer (agreement below one half) from which the
#: consensus counts as weakly supported. Set on the MMLU-Pro pools measured in the README (it
#: separates most pools with label-free regret > 5 points from those < 1); other answer sets may
#: call for another value, which their own labels can show.
SPLIT_LIMIT = 0.3
#: Labels recommended when the fit is untrustworthy (50 random labels bring the regret of the
#: measured pools within about a point of the best model, docs/algorithm.md#labels).
RECOMMENDED_LABELS = 50


@dataclass(frozen=True)
class Diagnostics:
    """Trust in a label-free fit (:func:`diagnose`).

    Attributes:
        trust: ``0..1``; 1 = no sign that the consensus misranks a competent dissenter.
        trustworthy: ``trust >= TRUST_THRESHOLD``.
        reasons: human-readable findings behind the score (empty when none).
        recommended_labels: how many questions to label (0 when trustworthy).
        message: one line for the ``train`` summary: ``"label N questions ..."`` when untrustworthy.
        rival: name of the model most at odds with the consensus favourite, or ``None``.
        favourite: name of the consensus favourite.
        labels: after a fit with labels, which candidate router the labels chose and why
            (:class:`cascal.router.label_choice.LabelChoice`); ``None`` label-free.
    """

    trust: float
    trustworthy: bool
    reasons: tuple[str, ...]
    recommended_labels: int
    message: str
    rival: str | None
    favourite: str
    labels: Optional[LabelChoice] = None


def diagnose(
    responses: ResponseMatrix, plurality: np.ndarray, agreement: np.ndarray, global_scores: np.ndarray
) -> Diagnostics:
    """The trust diagnostic of a label-free fit on ``responses`` (module docstring).

    Args:
        responses: the training answers.
        plurality, agreement: the consensus kernel's outputs on them (the share of questions with
            agreement below one half is the weak-support signal; the leave-one-out statistics are
            recomputed here).
        global_scores: ``(M,)`` global consensus scores of the fit.
    """
    del plurality
    split = float(np.mean(np.asarray(agreement) < 0.5)) if len(agreement) else 0.0
    A = np.asarray(responses.answers)
    n_q, M = A.shape
    names = list(responses.model_names)
    scores = np.nan_to_num(np.asarray(global_scores, dtype=np.float64), nan=-np.inf)
    top = int(np.argmax(scores))
    if M < 3 or n_q == 0:
        return Diagnostics(1.0, True, (), 0, "consensus: too few models to judge", None, names[top])
    easy_share, hard_share, n_hard = _leave_one_out_agreement(A, int(responses.n_options.max()))
    stake = np.zeros(M)
    for m in range(M):
        if m != top and easy_share[m] >= easy_share[top] - EASY_MARGIN:
            stake[m] = max(hard_share[top] - hard_share[m], 0.0) * n_hard[m]
    rival = int(np.argmax(stake))
    rival_trust = float(np.clip(1.0 - stake[rival] / STAKE_SCALE, 0.0, 1.0))
    trust = min(rival_trust, 1.0 - split)
    trustworthy = rival_trust >= TRUST_THRESHOLD and split < SPLIT_LIMIT
    reasons: list[str] = []
    summaries: list[str] = []  # one short clause per reason, for the one-line message
    if split >= SPLIT_LIMIT:
        summaries.append(f"no answer has a majority on {split:.0%} of the questions")
        reasons.append(
            f"no answer has a majority on {split:.0%} of the questions: the plurality is weakly supported, "
            "so a stronger model that dissents from it cannot be told apart from a weaker one"
        )
    if stake[rival] > 0:
        summaries.append(f"the consensus may outvote {names[rival]} on {stake[rival]:.0%} of the questions")
        reasons.append(
            f"{names[rival]} agrees with the pool on {easy_share[rival]:.0%} of the near-unanimous questions "
            f"(favourite {names[top]}: {easy_share[top]:.0%}) but only on {hard_share[rival]:.0%} of the split ones "
            f"({hard_share[top]:.0%}): on {stake[rival]:.0%} of the questions the consensus may be outvoting it"
        )
    if trustworthy:
        message = f"consensus trust {trust:.2f}: no sign that the pool outvotes a stronger model"
        n_labels = 0
    else:
        n_labels = RECOMMENDED_LABELS
        message = (
            f"consensus trust {trust:.2f}: label {n_labels} questions (`cascal label`) and train with --labels "
            f"({'; '.join(summaries)})"
        )
    return Diagnostics(
        trust=trust,
        trustworthy=trustworthy,
        reasons=tuple(reasons),
        recommended_labels=n_labels,
        message=message,
        rival=None if stake[rival] == 0 else names[rival],
        favourite=names[top],
    )


#: (question, model, option) cells per block of :func:`_leave_one_out_agreement` (bounds its memory)
_BLOCK_CELLS = 1 << 22


def _leave_one_out_agreement(A: np.ndarray, n_options: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per model: how often it agrees with the plurality of the *other* models on near-unanimous
    ("easy") and on split ("hard") questions, and the share of its usable questions that are hard.

    ``A`` is the ``(n_q, M)`` answer matrix (-1 = no answer, -2 = not asked). A question counts for
    model ``m`` when the others' plurality is unique and non-empty and ``m`` was asked; it is easy
    when that plurality holds at least ``EASY_AGREEMENT`` of the others' answers. Computed for all
    models at once, over blocks of questions.
    """
    n_q, M = A.shape
    valid = A >= 0
    options = np.arange(n_options)
    totals = np.zeros((5, M), dtype=np.int64)  # agree&easy, easy, agree&hard, hard, usable
    block = max(1, _BLOCK_CELLS // max(M * n_options, 1))
    for start in range(0, n_q, block):
        a = A[start : start + block]
        v = valid[start : start + block]
        own = a[:, :, None] == options  # (b, M, K): the model's own answer
        counts = own.sum(axis=1, dtype=np.int32)  # (b, K): answers per option
        loo = counts[:, None, :] - own  # the others' answers per option, for every model
        best = loo.max(axis=2)
        winner = loo.argmax(axis=2)
        unique = (loo == best[:, :, None]).sum(axis=2) == 1
        others = v.sum(axis=1)[:, None] - v
        ratio = np.where(others > 0, best / np.maximum(others, 1), 0.0)
        usable = unique & (best > 0) & (a != -2)
        easy = usable & (ratio >= EASY_AGREEMENT)
        hard = usable & ~easy
        agree = a == winner
        totals += np.stack([(agree & easy).sum(0), easy.sum(0), (agree & hard).sum(0), hard.sum(0), usable.sum(0)])
    agree_easy, n_easy, agree_hard, n_hard_q, n_usable = totals
    easy_share = np.divide(agree_easy, n_easy, out=np.zeros(M), where=n_easy > 0)
    hard_share = np.divide(agree_hard, n_hard_q, out=np.zeros(M), where=n_hard_q > 0)
    return easy_share, hard_share, n_hard_q / np.maximum(n_usable, 1)
