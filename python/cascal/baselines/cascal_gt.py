"""CASCAL-GT: the CASCAL router trained on the answer key's correctness instead of consensus.

The query-answer counterpart of CASCAL (docs/algorithm.md#baselines): niches, niche scores and routing are CASCAL's,
but the per-question model scores are ``1`` (right by the key) / ``0`` (wrong), a model's
proficiency set is the questions it got right by the key (all weighted 1), and the global ranking
is the key accuracy.
"""

from __future__ import annotations

import numpy as np

from cascal.baselines._inputs import key_correctness
from cascal.data import ResponseMatrix
from cascal.router import CascalRouter


class CascalGT(CascalRouter):
    """:class:`cascal.router.CascalRouter` with the key's correctness in place of consensus scores.

    Same constructor parameters as :class:`~cascal.router.CascalRouter` (the consensus parameters
    only affect the logprob statistics ``stats_`` used to break vote ties). Reads ``responses.gold``
    and refuses a key that is entirely unknown.
    """

    uses_answer_key = True

    def _score_questions(self, responses: ResponseMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores = correctness by the key (NaN where not asked or the key is unknown); "plurality" =
        right by the key; agreement = 1 where the key is known (0 keeps unkeyed questions out of
        every proficiency set)."""
        correct = key_correctness(responses)
        super()._score_questions(responses)  # sets stats_ (logprob statistics for vote tie-breaks)
        right = np.nan_to_num(correct, nan=0.0) > 0.5
        agreement = np.where(np.asarray(responses.gold) >= 0, 1.0, 0.0)
        return correct, right, agreement
