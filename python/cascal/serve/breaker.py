"""A per-upstream circuit breaker: after ``failures`` consecutive failures a model is skipped for
``cooldown`` seconds; then requests may probe it again (half-open) and the first success closes it.

States: ``closed`` (in use), ``open`` (skipped until the cool-down ends), ``half_open`` (cool-down
over; the next result decides: success closes it, failure re-opens it for another cool-down).
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

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        with self._lock:
            if not self._opened:
                return "closed"
            return "open" if self._clock() < self._open_until else "half_open"

    def allows(self) -> bool:
        """Whether a request may be sent now (closed, or half-open after the cool-down)."""
        return self.state != "open"

    def record_success(self) -> None:
        """A request succeeded: the breaker closes and the failure count restarts."""
        with self._lock:
            self._consecutive = 0
            self._opened = False

    def record_failure(self) -> bool:
        """A request failed; returns True when this failure opened (or re-opened) the breaker."""
        with self._lock:
            self._consecutive += 1
            half_open = self._opened and self._clock() >= self._open_until
            if half_open or (not self._opened and self._consecutive >= self.failures):
                self._opened = True
                self._open_until = self._clock() + self.cooldown
                return True
            return False
