"""Every exception cascal raises on purpose, under one base class.

Catch :class:`CascalError` to handle anything cascal refuses; each subclass also keeps the builtin
base it had before this module existed (``ValueError`` for bad input, ``RuntimeError`` for failures
of the world outside), so ``except ValueError`` in existing callers keeps working. Messages name the
problem's place first: the file (and line or field), or the argument.

The command line maps any :class:`CascalError` to one line on stderr and exit status 2
(:func:`cascal.cli.main`).
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "CascalError",
    "ConfigError",
    "DataError",
    "EmbeddingError",
    "EndpointError",
    "GenerationError",
    "InvalidParameterError",
    "KernelError",
    "NotFittedError",
    "ProtocolError",
    "RouterFileError",
    "UnknownModelError",
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
