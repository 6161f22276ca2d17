"""Every Ray test runs under a watchdog: a test that hangs (a job waiting for resources it never
gets) fails after ``RAY_TEST_SECONDS`` instead of holding up the suite."""

from __future__ import annotations

import signal

import pytest

RAY_TEST_SECONDS = 240


@pytest.fixture(autouse=True)
def watchdog():
    def expire(signum, frame):
        raise TimeoutError(f"Ray test still running after {RAY_TEST_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(RAY_TEST_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
