"""Every exception cascal raises on purpose, under one base class.

Catch :class:`CascalError` to handle anything cascal refuses; each subclass also keeps the builtin
base it had before this module existed (``ValueError`` for bad input, ``TypeError`` for an argument
of the wrong type, ``KeyError`` for a failed lookup, ``RuntimeError`` for failures of the world
outside), so ``except ValueError`` in existing callers keeps working. Messages name the
problem's place first: the file (and line or field), or the argument.

The command line maps any :class:`CascalError` to one line on stderr and exit status 2
(:func:`cascal.cli.main`).
"""

from __future__ import annotations

from typing import Iterator, Optional

__all__ = [
    "ArgumentTypeError",
    "CascalError",
    "CascalWarning",
    "ClosedError",
    "ConfigError",
    "DataError",
    "DecisionLogWarning",
    "EmbeddingError",
    "EmbedderFallbackWarning",
    "EndpointError",
    "GenerationError",
    "InvalidParameterError",
    "KernelError",
    "NoUsableAnswerWarning",
    "NotFittedError",
    "NotFoundError",
    "PricingWarning",
    "ProtocolError",
    "ReloadError",
    "ReplyWarning",
    "RouterFileError",
    "ServerStartError",
    "UnknownModelError",
    "exception_chain",
]


class CascalError(Exception):
    """Base class of every error cascal raises on purpose."""


class DataError(CascalError, ValueError):
    """Malformed dataset or response matrix; the message names the file/argument and the problem."""


class ConfigError(CascalError, ValueError):
    """Invalid configuration file; the message starts with ``<file>: <field path>:``."""


class InvalidParameterError(CascalError, ValueError):
    """A parameter of a router or a function is out of its documented range; the message starts with
    the parameter's name."""


class RouterFileError(CascalError, ValueError):
    """A saved router file is unreadable, corrupt, incomplete or from a newer format version; the
    message starts with the file's path."""


class ProtocolError(CascalError, ValueError):
    """A pool, key or split request that the data cannot satisfy; the message says what is available."""


class EmbeddingError(CascalError, ValueError):
    """An embedder cannot be built or gave unusable vectors."""


class UnknownModelError(CascalError, ValueError, LookupError):
    """A request named a model that is not served (a ``LookupError`` too, so a server can answer it
    with "404 model not found")."""


class KernelError(CascalError, ValueError):
    """Invalid input to a Rust kernel, raised by :mod:`cascal._core`.

    Attributes:
        arg: the name of the offending argument as the Python API spells it (``None`` when the
            problem is not one argument's).
    """

    def __init__(self, message: str, arg: Optional[str] = None) -> None:
        super().__init__(message)
        self.arg = arg


class ArgumentTypeError(CascalError, TypeError):
    """An argument of the wrong type (a ``TypeError``, as Python raises for one), or a call Python
    itself would refuse with ``TypeError``; the message starts with the argument's name."""


class ClosedError(CascalError, ValueError):
    """An object was used after it was closed (a response cache); a ``ValueError``, as for a closed
    Python file. The message names the object."""


class NotFoundError(CascalError, KeyError):
    """A lookup by name found no entry (a row of a demo result); a ``KeyError``, whose message reads
    as written (not quoted as ``KeyError`` quotes its key)."""

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class NotFittedError(CascalError, RuntimeError):
    """A router was used before ``fit`` (or ``load``)."""


class EndpointError(CascalError, RuntimeError):
    """An LLM endpoint cannot serve a model: unreachable, rate-limited past the retries, or it
    rejected the request. The message names the endpoint and the model."""

    def __init__(self, message: str, *, model_name: Optional[str] = None, base_url: Optional[str] = None) -> None:
        super().__init__(message)
        self.model_name = model_name
        self.base_url = base_url


class GenerationError(CascalError, RuntimeError):
    """Question generation produced no usable question at all (the report says why)."""


class ReloadError(CascalError, RuntimeError):
    """A running gateway did not take a new router file. Asked as a client (refused the key, has no
    reload endpoint, unreachable): the router file itself is written. In the gateway (a file refused
    by its checks, or no files to read again): the router and pool it served keep serving."""


class ServerStartError(CascalError, RuntimeError):
    """A server cascal starts (the gateway's thread, a Ray Serve application) did not come up in
    time, or stopped while starting; the message says which and, when known, why."""


# ---------------------------------------------------------------------------------------- warnings


class CascalWarning(UserWarning):
    """Base class of every warning cascal issues; filter one kind by its class, never by its text."""


class NoUsableAnswerWarning(CascalWarning):
    """Some (or all) models of a response matrix have no usable answer: they score 0 on every
    question, and with none usable the router routes uniformly."""


class PricingWarning(CascalWarning):
    """A cost table was built from incomplete prices: a pool model without a price (priced 0), or
    responses without completion-token counts (only the prompt is priced)."""


class ReplyWarning(CascalWarning):
    """A reply carried a value cascal cannot use (a usage number that is not a token count, an
    impossible log-probability); the value was dropped and the rest of the reply kept."""


class DecisionLogWarning(CascalWarning):
    """A decision log (or a file of logged queries) was read only in part (a damaged line stopped
    the reading), or holds lines that do not record which router wrote them (accepted unchecked)."""


class EmbedderFallbackWarning(CascalWarning, RuntimeWarning):
    """The embedder asked for is not installed and the hashing fallback embeds instead."""


# ---------------------------------------------------------------------------------------- helpers


def exception_chain(exc: BaseException, *, also: tuple[str, ...] = ()) -> Iterator[BaseException]:
    """``exc`` and every exception behind it, nearest first: each one's ``__cause__`` (or, when that is
    unset, ``__context__``), and the exceptions held in the attributes named in ``also`` (for
    wrappers such as Ray's that keep the original in an attribute). Each exception is yielded once,
    so a chain that loops ends."""
    seen: set[int] = set()
    todo: list[Optional[BaseException]] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        held = [getattr(current, name, None) for name in also]
        todo += [e for e in held if isinstance(e, BaseException)]
        todo.append(current.__cause__ or current.__context__)
