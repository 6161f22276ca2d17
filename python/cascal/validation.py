"""Parameter checks in one place, in the style of scikit-learn's ``_parameter_constraints``.

A class declares what each constructor parameter may be, and :func:`validate_params` checks values
against those declarations::

    class MyRouter(BaseRouter):
        _parameter_constraints = {
            "tau": [Interval(Real, 0, None, closed="neither")],
            "k": [Interval(Integral, 1, None, closed="left")],
            "mode": [Options({"fast", "exact"})],
            "threshold": [Interval(Real, 0, None, closed="left"), "auto"],
            "random_state": [Interval(Integral, 0, None, closed="left"), None],
        }

A parameter is valid when it satisfies **any** constraint of its list. A constraint is a
:class:`Constraint` object or one of these shorthands:

- ``None``: the value ``None``;
- a string, e.g. ``"auto"``: exactly that string;
- a class, e.g. ``str``: an instance of it (``bool`` is never an instance of a number class);
- the builtin ``callable``: any callable.

``bool`` is never accepted as a number, and :class:`Interval` over ``Real`` only accepts finite
values. A refused value raises :class:`cascal.errors.InvalidParameterError` whose message starts
with the parameter's name, e.g. ``tau: must be a finite number > 0, got -1``; the offending value is
shown with :func:`short_repr`, so a huge value never floods a message.
"""

from __future__ import annotations

import math
import reprlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from numbers import Integral, Real
from typing import Any, Literal, Optional

from cascal.errors import ArgumentTypeError, InvalidParameterError

__all__ = [
    "MAX_PRICE_PER_MTOK",
    "Constraint",
    "InstanceOf",
    "Interval",
    "Options",
    "Pair",
    "describe",
    "make_constraint",
    "short_repr",
    "validate_params",
]

#: Longest ``repr`` of a value quoted in an error message (longer ones are cut with ``...``).
MAX_REPR = 80
#: Largest list price accepted, USD per million tokens (pool.yaml and prices files, ``Prices``;
#: docs/algorithm.md#prices-and-tokens). The dearest real prices are in the hundreds; a million is
#: far beyond them yet keeps every cost table finite: the largest completion-token count a float32
#: ``cost.csv`` holds (3.4e38) costs about 1e42 USD per 1,000 queries at this price.
MAX_PRICE_PER_MTOK = 1e6


def short_repr(value: object, limit: int = MAX_REPR) -> str:
    """``repr(value)`` cut to at most ``limit`` characters; long strings and containers are
    abbreviated before their full ``repr`` is built."""
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = limit
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 8
    text = shortener.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(bound: float) -> str:
    """A bound as written in a message: ``1``, ``0.25``, ``4294967295``."""
    return str(bound) if isinstance(bound, Integral) else f"{bound:.15g}"


class Constraint(ABC):
    """What a parameter may be: a predicate plus its description for error messages."""

    @abstractmethod
    def is_satisfied_by(self, value: object) -> bool:
        """Whether ``value`` satisfies the constraint (never raises)."""

    @abstractmethod
    def __str__(self) -> str:
        """A noun phrase describing the satisfying values, e.g. ``"an integer >= 1"``."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self}>"


class Interval(Constraint):
    """A number of the given kind between two bounds.

    Args:
        type: :class:`numbers.Integral` (integers, bool excluded) or :class:`numbers.Real` (finite
            numbers, integers included, bool excluded).
        left, right: the bounds; ``None`` = unbounded on that side.
        closed: which bounds belong to the interval: ``"left"``, ``"right"``, ``"both"`` or
            ``"neither"``.
    """

    def __init__(
        self,
        type: type,
        left: Optional[float],
        right: Optional[float],
        *,
        closed: Literal["left", "right", "both", "neither"],
    ) -> None:
        if type not in (Integral, Real):
            raise ArgumentTypeError(f"type: expected numbers.Integral or numbers.Real, got {type!r}")
        if closed not in ("left", "right", "both", "neither"):
            raise InvalidParameterError(f"closed: expected 'left', 'right', 'both' or 'neither', got {closed!r}")
        if left is not None and right is not None and left > right:
            raise InvalidParameterError(f"left: must not exceed right, got {left!r} > {right!r}")
        self.type = type
        self.left = left
        self.right = right
        self.closed = closed

    def is_satisfied_by(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.type):
            return False
        if not isinstance(value, Integral) and not math.isfinite(value):  # type: ignore[call-overload,arg-type,unused-ignore]
            return False  # integers are finite (and may be too large to convert to float)
        v: Any = value
        if self.left is not None and not (v >= self.left if self.closed in ("left", "both") else v > self.left):
            return False
        if self.right is not None and not (v <= self.right if self.closed in ("right", "both") else v < self.right):
            return False
        return True

    def __str__(self) -> str:
        left_closed, right_closed = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.type is Integral:
            kind = "an integer"
        else:  # a bounded interval is finite by construction; say it when a side is open-ended
            kind = "a number" if self.left is not None and self.right is not None else "a finite number"
        if self.left is not None and self.right is not None:
            return f"{kind} in {'[' if left_closed else '('}{_number(self.left)}, {_number(self.right)}{']' if right_closed else ')'}"
        if self.left is not None:
            return f"{kind} {'>=' if left_closed else '>'} {_number(self.left)}"
        if self.right is not None:
            return f"{kind} {'<=' if right_closed else '<'} {_number(self.right)}"
        return kind


class Options(Constraint):
    """One of a fixed set of values (a value of another type never matches, e.g. ``True`` is not
    the option ``1``)."""

    def __init__(self, options: Iterable[object]) -> None:
        self.options = tuple(sorted(options, key=repr))  # no set: True and 1 are distinct options
        if not self.options:
            raise InvalidParameterError("options: at least one option is required")

    def is_satisfied_by(self, value: object) -> bool:
        return any(
            isinstance(value, type(option)) and isinstance(value, bool) == isinstance(option, bool) and value == option
            for option in self.options
        )

    def __str__(self) -> str:
        quoted = [repr(option) for option in self.options]
        return quoted[0] if len(quoted) == 1 else f"one of {', '.join(quoted)}"


class InstanceOf(Constraint):
    """An instance of a class; ``bool`` never counts as a number (``Integral``, ``Real``, ``int``,
    ``float``)."""

    _NAMES = {
        str: "a string",
        Integral: "an integer",
        int: "an integer",
        Real: "a number",
        float: "a number",
        bool: "a bool",
    }

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def is_satisfied_by(self, value: object) -> bool:
        if isinstance(value, bool) and self.cls is not bool:
            return False
        return isinstance(value, self.cls)

    def __str__(self) -> str:
        return self._NAMES.get(self.cls, f"an instance of {self.cls.__name__}")


class Pair(Constraint):
    """A ``(low, high)`` tuple or list of two values that each satisfy ``element``; with
    ``increasing=True``, ``low < high`` too."""

    def __init__(self, element: Constraint, *, increasing: bool = False) -> None:
        self.element = element
        self.increasing = increasing

    def is_satisfied_by(self, value: object) -> bool:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            return False
        low, high = value
        if not (self.element.is_satisfied_by(low) and self.element.is_satisfied_by(high)):
            return False
        return not self.increasing or bool(low < high)

    def __str__(self) -> str:
        order = " with low < high" if self.increasing else ""
        return f"a (low, high) pair{order}, each {self.element}"


class _IsNone(Constraint):
    def is_satisfied_by(self, value: object) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class _IsCallable(Constraint):
    def is_satisfied_by(self, value: object) -> bool:
        return callable(value)

    def __str__(self) -> str:
        return "a callable"


def make_constraint(spec: object) -> Constraint:
    """The :class:`Constraint` a declaration stands for (see the module docstring for shorthands)."""
    if isinstance(spec, Constraint):
        return spec
    if spec is None:
        return _IsNone()
    if isinstance(spec, str):
        return Options([spec])
    if spec is callable:
        return _IsCallable()
    if isinstance(spec, type):
        return InstanceOf(spec)
    raise ArgumentTypeError(f"unknown parameter constraint {spec!r}")


def describe(constraints: Iterable[Constraint]) -> str:
    """``"a, b or c"`` from the constraints' descriptions."""
    parts = [str(c) for c in constraints]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} or {parts[-1]}"


def validate_params(name_to_value: Mapping[str, object], constraints: Mapping[str, object]) -> None:
    """Check every value of ``name_to_value`` against its declared constraints, in order.

    Args:
        name_to_value: parameter name -> value (e.g. ``estimator.get_params(deep=False)``).
        constraints: parameter name -> a list of constraints (any one may be satisfied) or a single
            constraint; see the module docstring for the accepted forms.

    Raises:
        InvalidParameterError: the first value that satisfies none of its constraints; the message
            reads ``<name>: must be <description>, got <value>``.
        ArgumentTypeError: (a ``TypeError``) a parameter has no declared constraint, or a
            declaration is not a constraint (mistakes of the declaring code, not of the caller).
    """
    for name, value in name_to_value.items():
        if name not in constraints:
            raise ArgumentTypeError(f"{name}: no constraint declared for this parameter")
        declared = constraints[name]
        allowed = [make_constraint(c) for c in (declared if isinstance(declared, list) else [declared])]
        if not any(c.is_satisfied_by(value) for c in allowed):
            raise InvalidParameterError(f"{name}: must be {describe(allowed)}, got {short_repr(value)}")
