"""Keyed, order-independent randomness for the simulator.

Every simulated decision (a model's answer, a generator's key, a question's words) is a pure function
of the world seed and the inputs of the request, never of a shared random stream. So replies are the
same whatever the order or concurrency of requests, and a cached reply equals a fresh one.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _digest(*parts: object) -> bytes:
    h = hashlib.blake2b(digest_size=16, person=b"cascal-simulate")
    for part in parts:
        data = str(part).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def stable_int(*parts: object) -> int:
    """A 64-bit non-negative integer determined by ``parts``."""
    return int.from_bytes(_digest(*parts)[:8], "little")


def stable_unit(*parts: object) -> float:
    """A number in ``[0, 1)`` determined by ``parts`` (uniform over the hash)."""
    return (stable_int(*parts) >> 11) / float(1 << 53)


def stable_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by ``parts``, for drawing several values at once."""
    return np.random.default_rng(int.from_bytes(_digest(*parts), "little"))
