"""CASCAL-GT: the CASCAL router trained on the answer key's correctness instead of consensus.

The query-answer upper reference of CASCAL (DESIGN §4): niches, niche scores and routing are
CASCAL's, but the per-question model scores are ``1`` (right by the key) / ``0`` (wrong), a
model's proficiency set is the questions it got right by the key (all weighted 1), and the global
ranking is the key accuracy.
"""

from __future__ import annotations

import numpy as np

from cascal import kernels
from cascal.baselines._inputs import check_fit_inputs, key_correctness, normalize_rows
from cascal.data import ResponseMatrix
from cascal.niches import Niche, discover_subject_niches
from cascal.router import CascalRouter, ConsensusStats


class CascalGT(CascalRouter):
    """:class:`cascal.router.CascalRouter` with the key's correctness in place of consensus scores.

    Same constructor parameters as :class:`~cascal.router.CascalRouter` (the consensus parameters
    only affect the logprob statistics used to break vote ties). Reads ``responses.gold``.
    """

    uses_answer_key = True

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "CascalGT":
        """Learn niches from the key: ``responses.gold`` must hold the (real or generated) key."""
        self._validate_params()
        X = check_fit_inputs(embeddings, responses)
        if (np.linalg.norm(X, axis=1) == 0).any():
            raise ValueError("embeddings: contains an all-zero row (no direction to compare)")
        X = normalize_rows(X)
        correct = key_correctness(responses)  # NaN: not asked or key unknown
        scores = correct
        plurality = np.nan_to_num(correct, nan=0.0) > 0.5
        agreement = np.where(np.asarray(responses.gold) >= 0, 1.0, 0.0)
        consensus = kernels.consensus_scores(
            responses.answers, responses.n_options, responses.logprobs,
            z_scale=float(self.z_scale), tau=float(self.tau), clamp=(float(self.clamp[0]), float(self.clamp[1])),
        )
        self.stats_ = ConsensusStats(mu=np.asarray(consensus.mu, dtype=np.float64),
                                     sigma=np.asarray(consensus.sigma, dtype=np.float64))

        rng = np.random.default_rng(self.random_state)
        config = self._niche_config()
        subjects = np.asarray(responses.subjects)
        self.subject_names_ = sorted(set(subjects.tolist()))
        niches: dict[str, list[Niche]] = {}
        reps = []
        for name in self.subject_names_:
            rows = np.flatnonzero(subjects == name)
            niches[name] = discover_subject_niches(
                name, X[rows], scores[rows], plurality[rows], agreement[rows], config, rng
            )
            reps.append(self._subject_rep(X[rows], niches[name]))
        self.model_names_ = list(responses.model_names)
        self.niches_ = niches
        known = ~np.isnan(scores)
        self.global_scores_ = np.where(known, scores, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
        self.subject_reps_ = np.asarray(reps, dtype=np.float32)
        self._set_tables_from_niches()
        return self
