"""cascal.validation: constraint objects, validate_params, and every router's declared constraints."""

from __future__ import annotations

import math
import operator
from numbers import Integral, Real

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.baselines import (
    BestSingleConsensus,
    BestSingleGold,
    ClusterRank,
    KNNCorrectness,
    RandomRouter,
    SmoothieTrain,
)
from cascal.baselines.cascal_gt import CascalGT
from cascal.errors import InvalidParameterError
from cascal.router import CascalRouter
from cascal.validation import MAX_REPR, Interval, Options, Pair, short_repr, validate_params

ROUTERS = [
    CascalRouter,
    CascalGT,
    RandomRouter,
    BestSingleConsensus,
    SmoothieTrain,
    KNNCorrectness,
    ClusterRank,
    BestSingleGold,
]


# ----------------------------------------------------------------------------- a direct predicate per declaration
def _in_bounds(v: float, left, right, closed: str) -> bool:
    low = operator.ge if closed in ("left", "both") else operator.gt
    high = operator.le if closed in ("right", "both") else operator.lt
    return (left is None or low(v, left)) and (right is None or high(v, right))


def expected(spec: tuple, value: object) -> bool:
    """What a declaration should accept, written independently of cascal.validation."""
    kind = spec[0]
    if kind == "interval":
        _, number, left, right, closed = spec
        if type(value) in (bool, np.bool_):
            return False
        if number is Integral:
            return type(value) in (int, np.int64) and _in_bounds(value, left, right, closed)
        finite = type(value) in (int, np.int64) or (type(value) in (float, np.float64) and math.isfinite(value))
        return finite and _in_bounds(value, left, right, closed)
    if kind == "options":  # same kind of value (np.float64 is a float; a bool is not an int)
        return any(
            isinstance(value, type(option)) and isinstance(value, bool) == isinstance(option, bool) and value == option
            for option in spec[1]
        )
    if kind == "literal":
        return type(value) is str and value == spec[1]
    if kind == "none":
        return value is None
    if kind == "str":
        return type(value) is str
    if kind == "callable":
        return callable(value)
    if kind == "pair":
        element = ("interval", Real, 0, 1, "both")
        return (
            type(value) in (tuple, list)
            and len(value) == 2
            and expected(element, value[0])
            and expected(element, value[1])
            and value[0] < value[1]
        )
    raise AssertionError(spec)


def declaration(spec: tuple) -> object:
    kind = spec[0]
    if kind == "interval":
        return Interval(spec[1], spec[2], spec[3], closed=spec[4])
    if kind == "options":
        return Options(spec[1])
    if kind == "literal":
        return spec[1]
    if kind == "none":
        return None
    if kind == "str":
        return str
    if kind == "callable":
        return callable
    return Pair(Interval(Real, 0, 1, closed="both"), increasing=True)


bounds = st.one_of(st.none(), st.integers(-5, 5), st.floats(-5, 5))


@st.composite
def intervals(draw: st.DrawFn) -> tuple:
    left, right = draw(bounds), draw(bounds)
    if left is not None and right is not None and left > right:
        left, right = right, left
    return (
        "interval",
        draw(st.sampled_from([Integral, Real])),
        left,
        right,
        draw(st.sampled_from(["left", "right", "both", "neither"])),
    )


atoms = st.one_of(st.sampled_from(["auto", "fast", "exact", ""]), st.integers(-3, 3), st.booleans(), st.floats(-3, 3))
specs = st.one_of(
    intervals(),
    st.tuples(st.just("options"), st.lists(atoms, min_size=1, max_size=4, unique_by=lambda a: (type(a), a))),
    st.tuples(st.just("literal"), st.sampled_from(["auto", "fast"])),
    st.just(("none",)),
    st.just(("str",)),
    st.just(("callable",)),
    st.just(("pair",)),
)
values = st.one_of(
    st.integers(-10, 10),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(
        ["auto", "fast", "exact", "", "x" * 500, np.bool_(True), np.int64(2), np.float64(0.5), np.float64("nan"), len]
    ),
    st.text(max_size=5),
    st.tuples(st.floats(-1, 2), st.floats(-1, 2)),
    st.lists(st.floats(-1, 2), max_size=3),
)


@settings(max_examples=800, deadline=None)
@given(spec_list=st.lists(specs, min_size=1, max_size=3), value=values)
def test_validate_params_agrees_with_a_direct_predicate(spec_list, value):
    constraints = {"param": [declaration(s) for s in spec_list]}
    ok = any(expected(s, value) for s in spec_list)
    if ok:
        validate_params({"param": value}, constraints)
    else:
        with pytest.raises(InvalidParameterError) as info:
            validate_params({"param": value}, constraints)
        message = str(info.value)
        assert message.startswith("param: must be ") and message.endswith(f", got {short_repr(value)}")
        assert len(message) < 400


# ----------------------------------------------------------------------------- messages
@pytest.mark.parametrize(
    "constraint, value, message",
    [
        (Interval(Real, 0, None, closed="neither"), -1, "tau: must be a finite number > 0, got -1"),
        (Interval(Real, 0, None, closed="neither"), math.inf, "tau: must be a finite number > 0, got inf"),
        (Interval(Integral, 1, None, closed="left"), 2.5, "tau: must be an integer >= 1, got 2.5"),
        (Interval(Integral, 1, None, closed="left"), True, "tau: must be an integer >= 1, got True"),
        (Interval(Real, 0, 1, closed="right"), 0, "tau: must be a number in (0, 1], got 0"),
        (Interval(Real, -1, 0.5, closed="both"), 0.75, "tau: must be a number in [-1, 0.5], got 0.75"),
        (Interval(Real, None, 2, closed="neither"), 2, "tau: must be a finite number < 2, got 2"),
        (Interval(Integral, None, None, closed="neither"), "3", "tau: must be an integer, got '3'"),
        (Options(["b", "a"]), "c", "tau: must be one of 'a', 'b', got 'c'"),
        (
            Pair(Interval(Real, 0, 1, closed="both"), increasing=True),
            (0.9, 0.1),
            "tau: must be a (low, high) pair with low < high, each a number in [0, 1], got (0.9, 0.1)",
        ),
    ],
)
def test_messages_name_the_parameter_and_the_bound(constraint, value, message):
    with pytest.raises(InvalidParameterError) as info:
        validate_params({"tau": value}, {"tau": [constraint]})
    assert str(info.value) == message


def test_alternatives_are_listed():
    constraints = {"t": [Interval(Real, 0, None, closed="left"), "auto", None]}
    for ok in (0, 2.5, "auto", None):
        validate_params({"t": ok}, constraints)
    with pytest.raises(InvalidParameterError, match=r"^t: must be a finite number >= 0, 'auto' or None, got 'far'$"):
        validate_params({"t": "far"}, constraints)


def test_bool_is_never_a_number():
    for constraint in (
        Interval(Integral, None, None, closed="neither"),
        Interval(Real, None, None, closed="neither"),
        Real,
        int,
    ):
        for flag in (True, False, np.bool_(True)):
            with pytest.raises(InvalidParameterError):
                validate_params({"n": flag}, {"n": constraint})


def test_long_values_are_cut_in_messages():
    with pytest.raises(InvalidParameterError) as info:
        validate_params({"name": "y" * 100_000}, {"name": [Options(["a"])]})
    assert len(str(info.value)) < 200 and "..." in str(info.value)
    assert len(short_repr(list(range(10**5)))) <= MAX_REPR
    assert short_repr("short") == "'short'"


def test_first_bad_parameter_in_order_is_reported_and_undeclared_ones_are_a_bug():
    constraints = {"a": [Interval(Integral, 0, None, closed="left")], "b": [str]}
    with pytest.raises(InvalidParameterError, match="^a: "):
        validate_params({"a": -1, "b": 3}, constraints)
    with pytest.raises(TypeError, match="c: no constraint declared"):
        validate_params({"a": 1, "b": "x", "c": 0}, constraints)
    with pytest.raises(TypeError, match="unknown parameter constraint"):
        validate_params({"a": 1}, {"a": [3.5]})


def test_constraints_refuse_bad_declarations():
    with pytest.raises(TypeError):
        Interval(float, 0, 1, closed="both")
    with pytest.raises(ValueError):
        Interval(Real, 0, 1, closed="open")
    with pytest.raises(ValueError):
        Interval(Real, 2, 1, closed="both")
    with pytest.raises(ValueError):
        Options([])


# ----------------------------------------------------------------------------- every router declares its parameters
@pytest.mark.parametrize("cls", ROUTERS)
def test_every_router_declares_exactly_its_parameters_and_accepts_its_defaults(cls):
    router = cls()
    assert set(type(router)._parameter_constraints) == set(router.get_params(deep=False))
    router.validate_params()


@pytest.mark.parametrize(
    "router, message",
    [
        (CascalRouter(tau=-1), "tau: must be a finite number > 0, got -1"),
        (CascalRouter(clamp=(0.5, 0.5)), "clamp: must be a (low, high) pair with low < high"),
        (CascalRouter(fallback_distance="far"), "fallback_distance: must be a finite number >= 0 or 'auto', got 'far'"),
        (CascalRouter(clustering="dbscan"), "clustering: must be one of 'agglomerative', 'kmeans', got 'dbscan'"),
        (CascalRouter(random_state=-1), "random_state: must be an integer >= 0 or None, got -1"),
        (CascalGT(max_niches=True), "max_niches: must be an integer >= 1, got True"),
        (RandomRouter(random_state="seed"), "random_state: must be an integer >= 0 or None"),
        (SmoothieTrain(n_neighbors=0), "n_neighbors: must be an integer >= 1, got 0"),
        (KNNCorrectness(k=np.float64(3)), "k: must be an integer >= 1, got "),
        (ClusterRank(n_init=0), "n_init: must be an integer >= 1, got 0"),
        (ClusterRank(random_state=2**32), "random_state: must be an integer in [0, 4294967295]"),
    ],
)
def test_validate_params_names_the_parameter(router, message):
    with pytest.raises(InvalidParameterError) as info:
        router.validate_params()
    assert str(info.value).startswith(message), str(info.value)


def test_numpy_scalars_are_numbers():
    CascalRouter(tau=np.float32(0.5), max_niches=np.int64(3), clamp=[np.float64(0.1), 0.9]).validate_params()
