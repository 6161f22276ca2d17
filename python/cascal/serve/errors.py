"""The gateway's two errors: a refusal answered in OpenAI's error JSON, and the gateway unable to serve.

:class:`APIError` is raised anywhere a request is refused or cannot be served (bad body, unknown
model, no upstream answered...); the gateway's error middleware (:mod:`cascal.serve.middleware`)
renders it as ``{"error": {"message", "type", "param", "code"}}`` with its HTTP status, so no handler
builds an error response itself. :class:`GatewayError` is the gateway itself failing: routing not
started, or shutting down.
"""

from __future__ import annotations

from typing import Mapping, Optional

from cascal.errors import CascalError

__all__ = ["APIError", "GatewayError", "error_body"]


def error_body(message: str, kind: str, *, code: Optional[str] = None, param: Optional[str] = None) -> dict:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class APIError(CascalError):
    """A request the gateway refuses or cannot serve, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        code: Optional[str] = None,
        param: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict:
        """The OpenAI-style error JSON."""
        return error_body(self.message, self.kind, code=self.code, param=self.param)


class GatewayError(CascalError, RuntimeError):
    """The gateway cannot serve: its routing was not started, it is shutting down, or (load
    benchmark) it answered a request with an error. A gateway that does not come up at all raises
    :class:`cascal.errors.ServerStartError`."""
