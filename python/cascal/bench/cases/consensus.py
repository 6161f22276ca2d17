"""Benchmark cases of the consensus kernel (docs/algorithm.md#consensus-scores) against its numpy and Python references."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascal import reference
from cascal.bench.registry import Case, register
from cascal.kernels import consensus_scores

FULL_ROWS = 1_000_000
QUICK_ROWS = 50_000
LOOP_ROWS = 5_000
N_MODELS = 12
N_CLASSES = 10


@dataclass
class ConsensusInput:
    answers: np.ndarray
    n_options: np.ndarray
    logprobs: np.ndarray


def make_input(n_rows: int, seed: int = 0) -> ConsensusInput:
    """A realistic response matrix: models right ~60% of the time, 2% unparsable, 1% not asked,
    float32 logprobs with 5% unknown."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, N_CLASSES, n_rows)
    answers = np.where(
        rng.random((n_rows, N_MODELS)) < 0.6, gold[:, None], rng.integers(0, N_CLASSES, (n_rows, N_MODELS))
    )
    codes = rng.random((n_rows, N_MODELS))
    answers[codes < 0.02] = -1
    answers[codes > 0.99] = -2
    logprobs = rng.normal(-0.7, 0.4, (n_rows, N_MODELS)).astype(np.float32)
    logprobs[rng.random((n_rows, N_MODELS)) < 0.05] = np.nan
    return ConsensusInput(answers.astype(np.int8), np.full(n_rows, N_CLASSES, dtype=np.int8), logprobs)


def _kernel(s: ConsensusInput):
    return consensus_scores(s.answers, s.n_options, s.logprobs)


def _numpy(s: ConsensusInput):
    return reference.consensus_scores(s.answers, s.n_options, s.logprobs)


def _loop_on_slice(s: ConsensusInput):
    """The plain-Python loop is far too slow for every row: it runs on the first LOOP_ROWS rows."""
    return reference.consensus_scores_loop(s.answers[:LOOP_ROWS], s.n_options[:LOOP_ROWS], s.logprobs[:LOOP_ROWS])


register(
    Case(
        name=f"consensus {FULL_ROWS:,} (quick {QUICK_ROWS:,})x{N_MODELS}x{N_CLASSES} +lp",
        setup=lambda quick: make_input(QUICK_ROWS if quick else FULL_ROWS),
        kernel=_kernel,
        references={"numpy vectorised": _numpy, "python loop": _loop_on_slice},
        targets={"numpy vectorised": 10.0, "python loop": 100.0},
        reference_scale={"python loop": lambda s: len(s.answers) / LOOP_ROWS},
        repeats=3,
        quick_repeats=3,
    )
)
