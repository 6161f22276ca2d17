"""Query-answer baselines: they score the pool against the answer key they are given
(``responses.gold``: the real gold, or a simulated generator's key) and route by those scores.

* :class:`KNNCorrectness` — per model, the mean correctness on the ``k`` nearest training questions.
* :class:`ClusterRank` — Avengers-style: k-means clusters of the embeddings, per-cluster accuracy.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar, Optional

import numpy as np
from sklearn.cluster import KMeans

from cascal.baselines._compute import cosine_neighbors
from cascal.baselines._inputs import column_means, key_correctness
from cascal.data import ResponseMatrix
from cascal.router.base import BaseRouter, check_fit_inputs
from cascal.validation import Interval
from cascal.vectors import unit_rows


class KNNCorrectness(BaseRouter):
    """Scores model ``m`` for a query by its mean correctness (against the key) on the ``k`` training
    questions nearest to the query in cosine similarity; questions the model was not asked are left
    out of its mean, and a model with none among the neighbours gets its global accuracy.

    Args:
        k: neighbours per query (capped at the training size).
    """

    uses_answer_key = True
    _parameter_constraints: ClassVar[dict[str, Any]] = {"k": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, k: int = 20) -> None:
        self.k = k

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "KNNCorrectness":
        self.validate_params()
        emb = check_fit_inputs(embeddings, responses)
        self.correct_ = key_correctness(responses)
        self.global_accuracy_ = column_means(self.correct_)
        self.train_embeddings_ = unit_rows(emb)
        self._remember_pool(emb, responses)
        return self

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        emb = self._query_embeddings(embeddings)
        k = min(int(self.k), self.train_embeddings_.shape[0])
        neighbors = cosine_neighbors(emb, self.train_embeddings_, k)
        local = self.correct_[neighbors]  # (n, k, M)
        known = ~np.isnan(local)
        counts = known.sum(axis=1)
        sums = np.where(known, local, 0.0).sum(axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), self.global_accuracy_[None, :])


class ClusterRank(BaseRouter):
    """Avengers-style cluster routing: k-means (``n_clusters`` = 64) on the L2-normalised training
    embeddings, each model's accuracy against the key on the training questions nearest (cosine) to
    every centre, and every query routed by the accuracies of its nearest centre.

    A model never asked in a cluster gets its global accuracy there. Equal cluster accuracies are
    ordered by global accuracy: the score is ``cluster_accuracy + 1e-6 · global_accuracy``.

    Args:
        n_clusters: k-means clusters (capped at the number of training questions).
        n_init: k-means restarts.
        random_state: k-means seed.

    Attributes:
        centers_: ``(n_clusters, d)`` L2-normalised cluster centres.
        cluster_accuracy_: ``(n_clusters, M)`` per-cluster accuracy of every model.
    """

    uses_answer_key = True
    _parameter_constraints: ClassVar[dict[str, Any]] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Interval(Integral, 0, 2**32 - 1, closed="both"), np.random.RandomState, None],
    }

    def __init__(self, n_clusters: int = 64, n_init: int = 1, random_state: Optional[int] = 0) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, embeddings: np.ndarray, responses: ResponseMatrix) -> "ClusterRank":
        self.validate_params()
        emb = unit_rows(check_fit_inputs(embeddings, responses))
        correct = key_correctness(responses)
        n_clusters = min(int(self.n_clusters), emb.shape[0])
        km = KMeans(n_clusters=n_clusters, n_init=int(self.n_init), random_state=self.random_state).fit(emb)
        self.centers_ = unit_rows(km.cluster_centers_)
        # training questions join their nearest centre by the same (cosine) rule queries use
        labels = cosine_neighbors(emb, self.centers_, 1)[:, 0]
        self.global_accuracy_ = column_means(correct)
        accuracy = np.empty((n_clusters, responses.n_models))
        for c in range(n_clusters):
            in_cluster = correct[labels == c]
            accuracy[c] = column_means(in_cluster, default=np.nan) if len(in_cluster) else np.nan
        self.cluster_accuracy_ = np.where(np.isnan(accuracy), self.global_accuracy_[None, :], accuracy)
        self._remember_pool(emb, responses)
        return self

    def route_scores(self, embeddings: np.ndarray) -> np.ndarray:
        emb = self._query_embeddings(embeddings)
        nearest = cosine_neighbors(emb, self.centers_, 1)[:, 0]
        return self.cluster_accuracy_[nearest] + 1e-6 * self.global_accuracy_[None, :]
