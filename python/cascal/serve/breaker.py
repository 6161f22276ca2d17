"""A per-upstream circuit breaker: after ``failures`` consecutive failures a model is skipped for
``cooldown`` seconds; then one request at a time may probe it (half-open) and the first success
closes it.

States: ``closed`` (in use), ``open`` (skipped until the cool-down ends), ``half_open`` (cool-down
over; the next result decides: success closes it, failure re-opens it for another cool-down).

Half-open admits one probe at a time: :meth:`CircuitBreaker.try_probe` claims the probe and every
other caller is refused until the probe's result is recorded (:meth:`~CircuitBreaker.record_success`,
:meth:`~CircuitBreaker.record_failure`) or the probe ends without a verdict
(:meth:`~CircuitBreaker.release_probe`: cancelled, or a request the upstream refused as malformed).
Without that, every request arriving after the cool-down would spend a try on a model that is most
likely still down.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Counts consecutive failures of one upstream model.

    Args:
        failures: consecutive failures that open the breaker (>= 1).
        cooldown: seconds it stays open.
        clock: monotonic time source (for tests).
    """

    def __init__(self, failures: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until = 0.0
        self._opened = False
        self._probing = False

    def _half_open(self) -> bool:
        return self._opened and self._clock() >= self._open_until

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        with self._lock:
            if not self._opened:
                return "closed"
            return "half_open" if self._half_open() else "open"

    @property
    def probing(self) -> bool:
        """Whether a half-open probe is in flight."""
        with self._lock:
            return self._probing

    def allows(self) -> bool:
        """Whether a request may be sent now: closed, or half-open with no probe in flight (then
        the request should claim the probe with :meth:`try_probe`)."""
        with self._lock:
            return not self._opened or (self._half_open() and not self._probing)

    def try_probe(self) -> bool:
        """Claim the half-open probe; False when the breaker is closed, still open, or another probe
        is in flight. A claimed probe ends with a recorded result or :meth:`release_probe`."""
        with self._lock:
            if self._probing or not self._half_open():
                return False
            self._probing = True
            return True

    def release_probe(self) -> None:
        """End a probe without a verdict (cancelled, or refused as malformed): the breaker stays
        half-open and the next request may probe (idempotent)."""
        with self._lock:
            self._probing = False

    def record_success(self) -> None:
        """A request succeeded: the breaker closes and the failure count restarts."""
        with self._lock:
            self._consecutive = 0
            self._opened = False
            self._probing = False

    def record_failure(self) -> bool:
        """A request failed; returns True when this failure opened (or re-opened) the breaker."""
        with self._lock:
            self._consecutive += 1
            self._probing = False
            if self._half_open() or (not self._opened and self._consecutive >= self.failures):
                self._opened = True
                self._open_until = self._clock() + self.cooldown
                return True
            return False
