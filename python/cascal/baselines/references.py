"""Reference points rather than routers: the best single model by the answer key, and the oracle."""

from __future__ import annotations

import numpy as np

from cascal.baselines._inputs import column_means, key_correctness
from cascal.data import ResponseMatrix
from cascal.router.base import BaseRouter, check_fit_inputs


class BestSingleGold(BaseRouter):
    """Sends every query to the models with the best accuracy against the answer key of the training
    set (top-3 = vote of the 3 most accurate). Given the real gold key this is the "best single model"
    reference; given a simulated generator's key it is the best single model by that key.

    Attributes:
        global_scores_: ``(M,)`` training accuracy of every model against the key.
    """

    uses_answer_key = True

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "BestSingleGold":
        self.validate_params()
        emb = check_fit_inputs(embeddings, responses)
        self.global_scores_ = column_means(key_correctness(responses))
        self._remember_pool(emb, responses)
        return self

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        emb = self._query_embeddings(embeddings)
        return np.broadcast_to(self.global_scores_, (emb.shape[0], len(self.model_names_))).copy()


def oracle_correct(responses: ResponseMatrix) -> np.ndarray:
    """``(n_q,)`` bool: some model of the pool answered the question right (by ``responses.gold``).

    The oracle is not a router: it reads the test answers and the test gold, so the evaluation harness
    reports it through this function instead of fitting it. Questions with unknown gold count as wrong.
    """
    gold = np.asarray(responses.gold)[:, None]
    return ((responses.answers == gold) & (gold >= 0)).any(axis=1)
