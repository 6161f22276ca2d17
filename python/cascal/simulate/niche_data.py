"""A synthetic answer set with known skill niches *inside* each subject (docs/ablations.md).

Unlike :class:`cascal.simulate.SimWorld` (which serves text over HTTP), this builds a
:class:`cascal.data.ResponseMatrix` directly, embeddings included, so the router's niche step can be
tested where the truth is known:

- **geometry**: every subject has a random unit direction; each of its ``topics`` topics is the
  subject direction plus ``topic_offset`` times an orthogonal random direction (renormalised), so
  topics of one subject are near each other (cosine distance ``~ o²/(1+o²)``, 0.5 at ``o = 1``) and
  far from other subjects; a question is its topic centre plus Gaussian noise of norm
  ``~ noise``, renormalised;
- **skills**: in subject ``s``, models ``2s mod M`` and ``2s+1 mod M`` are *specialists*: the first
  answers right with probability ``strong`` on the first half of the subject's topics and ``weak``
  on the second half, the second the other way round; every other model is a *generalist* right
  with probability ``generalist`` everywhere. Averaged over a subject a specialist is worth
  ``(strong + weak) / 2``, less than a generalist with the defaults, so a router that ranks models
  per subject picks a generalist while one that finds the niches picks the right specialist;
- **answers**: a wrong answer is a uniformly random wrong option; with ``logprobs=True`` a right
  answer has mean token logprob ``~ N(-0.3, 0.15)`` and a wrong one ``~ N(-0.9, 0.3)``.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments give the same data.
"""

from __future__ import annotations

import numpy as np

from cascal.data import LETTERS, ResponseMatrix
from cascal.errors import InvalidParameterError

__all__ = ["within_subject_niches"]


def within_subject_niches(
    *,
    n_subjects: int = 4,
    topics: int = 4,
    per_topic: int = 100,
    n_models: int = 6,
    n_options: int = 4,
    dim: int = 32,
    topic_offset: float = 1.0,
    noise: float = 0.35,
    strong: float = 0.85,
    weak: float = 0.35,
    generalist: float = 0.65,
    logprobs: bool = True,
    seed: int = 0,
) -> ResponseMatrix:
    """The synthetic answer set described in the module docstring.

    Returns a matrix of ``n_subjects * topics * per_topic`` questions (subjects ``subject-0`` ...,
    question ids ``s<S>-t<T>-<i>`` naming each question's topic), ``n_models`` models
    ``model-0`` ... (a model can be a specialist in several subjects), the true gold, unit
    ``(n, dim)`` embeddings and, when asked, logprobs.

    Raises:
        InvalidParameterError: (a ``ValueError``) fewer than 2 topics or models, more orthogonal
            directions needed (``n_subjects * (topics + 1)``) than ``dim``, a probability outside
            [0, 1], or ``n_options`` outside 2..20.
    """
    if topics < 2 or n_models < 2 or n_subjects < 1 or per_topic < 1:
        raise InvalidParameterError("n_subjects, per_topic >= 1 and topics, n_models >= 2 are needed")
    if n_subjects * (topics + 1) > dim:
        raise InvalidParameterError(
            f"dim: {dim} is too small for {n_subjects} subjects x {topics} orthogonal topic directions"
        )
    if not all(0.0 <= p <= 1.0 for p in (strong, weak, generalist)):
        raise InvalidParameterError("strong, weak, generalist: probabilities in [0, 1]")
    if not 2 <= n_options <= len(LETTERS):
        raise InvalidParameterError(f"n_options: 2..{len(LETTERS)}, got {n_options}")
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0].T  # orthonormal rows
    n = n_subjects * topics * per_topic
    X = np.empty((n, dim))
    subjects, ids = [], []
    accuracy = np.empty((n, n_models))
    row = 0
    for s in range(n_subjects):
        centre = basis[s * (topics + 1)]
        first, second = (2 * s) % n_models, (2 * s + 1) % n_models
        for t in range(topics):
            topic = centre + topic_offset * basis[s * (topics + 1) + 1 + t]
            topic /= np.linalg.norm(topic)
            points = topic + noise * rng.normal(size=(per_topic, dim)) / np.sqrt(dim)
            X[row : row + per_topic] = points / np.linalg.norm(points, axis=1, keepdims=True)
            acc = np.full(n_models, generalist)
            in_first_half = t < topics // 2
            acc[first] = strong if in_first_half else weak
            acc[second] = weak if in_first_half else strong
            accuracy[row : row + per_topic] = acc
            subjects += [f"subject-{s}"] * per_topic
            ids += [f"s{s}-t{t}-{i}" for i in range(per_topic)]
            row += per_topic
    gold = rng.integers(0, n_options, size=n)
    right = rng.random((n, n_models)) < accuracy
    # a wrong answer: one of the other n_options - 1 options, uniformly
    shift = rng.integers(1, n_options, size=(n, n_models))
    answers = np.where(right, gold[:, None], (gold[:, None] + shift) % n_options)
    lp = None
    if logprobs:
        lp = np.where(right, rng.normal(-0.3, 0.15, size=right.shape), rng.normal(-0.9, 0.3, size=right.shape))
    names = [f"model-{m}" for m in range(n_models)]
    return ResponseMatrix(
        answers=answers.astype(np.int8),
        n_options=np.full(n, n_options, dtype=np.int8),
        subjects=np.array(subjects),
        model_names=names,
        gold=gold.astype(np.int8),
        logprobs=lp,
        question_ids=np.array(ids),
        questions=[f"Synthetic question {q}?" for q in ids],
        options=[[f"option {LETTERS[k]}" for k in range(n_options)] for _ in range(n)],
        embeddings=X.astype(np.float32),
        embedding_model="synthetic",
    )
