"""cascal: label-free routing across a pool of LLMs (Routing with Generated Data, CASCAL).

The heavy kernels live in the Rust extension :mod:`cascal._core` and are exposed, validated, through
:mod:`cascal.kernels`; :mod:`cascal.reference` holds their plain numpy/scipy references. Every
error cascal raises on purpose is a :class:`CascalError` (see :mod:`cascal.errors`).
"""

from __future__ import annotations

from cascal import _core
from cascal.data import NO_ANSWER, NOT_ASKED, ResponseMatrix
from cascal.errors import CascalError, DataError

__version__ = _core.__version__

__all__ = ["ResponseMatrix", "CascalError", "DataError", "NO_ANSWER", "NOT_ASKED", "CascalRouter", "__version__"]


def __getattr__(name: str) -> object:
    """``cascal.CascalRouter`` is imported on first use: it needs scikit-learn and scipy, which a
    bare ``import cascal`` (numpy only) must not require."""
    if name == "CascalRouter":
        from cascal.router import CascalRouter

        return CascalRouter
    raise AttributeError(f"module 'cascal' has no attribute {name!r}")
