"""Benchmark cases of :meth:`cascal.router.CascalRouter.fit` on synthetic data (docs/benchmarks.md).

The synthetic response matrix has the shape of a large router training set: ``n`` questions in
``n_subjects`` subjects, 384-d unit embeddings (a subject direction, one of five topic directions of
that subject, and noise), 20 models whose accuracy depends on the (subject, topic) pair, 4 options,
float32 logprobs that are higher on right answers. Targets (issue 13): fit 100k x 20 models, 50
subjects <= 2 s; fit 1M x 20, 200 subjects <= 15 s with <= 3 GB peak RSS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascal.data import ResponseMatrix

DIM = 384
N_MODELS = 20
N_OPTIONS = 4
TOPICS_PER_SUBJECT = 5
#: rows generated at a time (bounds the float64 noise temporaries)
GENERATION_BLOCK = 65_536


@dataclass
class FitInput:
    """Embeddings ``(n, d)`` float32 and the pool's responses on the same questions."""

    embeddings: np.ndarray
    responses: ResponseMatrix


def make_fit_input(n: int, n_subjects: int, n_models: int = N_MODELS, dim: int = DIM, seed: int = 0) -> FitInput:
    """Synthetic training data of ``n`` questions (module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    subject_dirs = rng.standard_normal((n_subjects, dim)).astype(np.float32)
    topic_dirs = rng.standard_normal((n_subjects, TOPICS_PER_SUBJECT, dim)).astype(np.float32)
    # accuracy of every model on every (subject, topic): a model's base skill plus a niche bonus
    base = rng.uniform(0.35, 0.7, n_models)
    bonus = rng.uniform(-0.25, 0.25, (n_subjects, TOPICS_PER_SUBJECT, n_models))
    accuracy = np.clip(base + bonus, 0.05, 0.95)
    subject = np.sort(rng.integers(0, n_subjects, n))
    topic = rng.integers(0, TOPICS_PER_SUBJECT, n)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, GENERATION_BLOCK):
        stop = min(start + GENERATION_BLOCK, n)
        s, t = subject[start:stop], topic[start:stop]
        block = (
            subject_dirs[s] + 0.8 * topic_dirs[s, t] + 1.2 * rng.standard_normal((stop - start, dim), dtype=np.float32)
        )
        X[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    gold = rng.integers(0, N_OPTIONS, n)
    right = rng.random((n, n_models)) < accuracy[subject, topic]
    wrong = (gold[:, None] + rng.integers(1, N_OPTIONS, (n, n_models))) % N_OPTIONS
    answers = np.where(right, gold[:, None], wrong).astype(np.int8)
    answers[rng.random((n, n_models)) < 0.01] = -1
    logprobs = (np.where(right, -0.3, -0.9) + 0.3 * rng.standard_normal((n, n_models))).astype(np.float32)
    responses = ResponseMatrix(
        answers=answers,
        n_options=np.full(n, N_OPTIONS, dtype=np.int8),
        subjects=np.asarray([f"s{i:03d}" for i in range(n_subjects)])[subject],
        model_names=[f"m{j:02d}" for j in range(n_models)],
        gold=gold.astype(np.int8),
        logprobs=logprobs,
    )
    return FitInput(X, responses)
