"""The circuit breaker alone, on an injected clock: when it opens, how long it stays open, the one
probe at a time of the half-open state and what the probe's result does."""

from __future__ import annotations

import pytest

from cascal.serve.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def opened(clock: Clock, failures: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
    breaker = CircuitBreaker(failures, cooldown, clock=clock)
    for _ in range(failures):
        breaker.record_failure()
    assert breaker.state == "open"
    return breaker


def test_a_new_breaker_is_closed_and_admits_requests_without_probing(clock):
    breaker = CircuitBreaker(clock=clock)
    assert (breaker.failures, breaker.cooldown) == (3, 30.0)
    assert breaker.state == "closed" and breaker.allows() and breaker.probing is False
    assert not breaker.try_probe()  # nothing to probe while closed
    assert breaker.state == "closed" and not breaker.probing


def test_it_opens_at_the_nth_consecutive_failure_and_says_so_once(clock):
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state == "open" and not breaker.allows() and not breaker.try_probe()
    # more failures while open (requests already in flight) neither report nor extend the opening
    clock.now += 5
    assert breaker.record_failure() is False
    clock.now += 5
    assert breaker.state == "half_open"


def test_one_failure_opens_a_breaker_of_one(clock):
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    assert breaker.record_failure() is True and breaker.state == "open"


def test_a_success_restarts_the_failure_count(clock):
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    assert [breaker.record_failure(), breaker.record_failure()] == [False, False]
    assert breaker.state == "closed"
    assert breaker.record_failure() is True


def test_it_stays_open_for_exactly_the_cooldown(clock):
    breaker = opened(clock, cooldown=10.0)
    clock.now += 9.999
    assert breaker.state == "open" and not breaker.allows() and not breaker.try_probe()
    clock.now += 0.001
    assert breaker.state == "half_open" and breaker.allows()


def test_half_open_admits_one_probe_at_a_time(clock):
    breaker = opened(clock)
    clock.now += 10
    assert breaker.try_probe() is True
    assert breaker.probing and breaker.state == "half_open"
    assert not breaker.allows() and breaker.try_probe() is False
    breaker.release_probe()  # ended without a verdict: the next request may probe
    assert breaker.probing is False and breaker.allows() and breaker.state == "half_open"
    assert breaker.try_probe() is True


def test_a_failed_probe_reopens_for_another_cooldown(clock):
    breaker = opened(clock, failures=3, cooldown=10.0)
    clock.now += 12
    assert breaker.try_probe()
    assert breaker.record_failure() is True  # one failure is enough when half-open
    assert breaker.state == "open" and breaker.probing is False and not breaker.try_probe()
    clock.now += 9.9  # the new cool-down counts from the failed probe
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open" and breaker.try_probe()


def test_a_successful_probe_closes_and_restarts_the_count(clock):
    breaker = opened(clock, failures=2)
    clock.now += 10
    assert breaker.try_probe()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.probing is False and breaker.allows()
    assert breaker.record_failure() is False  # the count restarted: two failures open it again
    assert breaker.record_failure() is True


def test_a_failure_while_probing_clears_the_probe(clock):
    breaker = opened(clock)
    clock.now += 10
    assert breaker.try_probe()
    breaker.record_failure()
    clock.now += 10
    assert breaker.try_probe(), "a re-opened breaker must be probed again after its cool-down"
