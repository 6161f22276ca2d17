"""Ask a running ``cascal serve`` gateway to load its router file again (hot reload).

The gateway answers ``POST /admin/reload`` with the gateway key as ``Authorization: Bearer KEY``:
200 and a JSON body (the new router's hash) when it reloaded, 401 for a wrong key, 404 when it runs
without a key (the endpoint exists only then). :func:`reload_gateway` turns every way this can fail
into one :class:`~cascal.errors.ReloadError` that says what to do; it never touches the router file.
"""

from __future__ import annotations

from typing import Any

from cascal.errors import ConfigError, ReloadError

__all__ = ["RELOAD_PATH", "reload_gateway", "reload_url"]

#: The gateway's reload endpoint, relative to its base URL.
RELOAD_PATH = "/admin/reload"


def reload_url(url: str) -> str:
    """``url`` itself when it already ends with :data:`RELOAD_PATH`, else the gateway base URL ``url``
    joined with it."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"reload URL: expected the gateway's http:// or https:// URL, got {url!r}")
    base = url.rstrip("/")
    return base if base.endswith(RELOAD_PATH) else base + RELOAD_PATH


def reload_gateway(url: str, key: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """POST to the gateway's reload endpoint with ``key``; returns its JSON answer.

    Args:
        url: the gateway's base URL (``http://127.0.0.1:8000``) or its full reload URL.
        key: the gateway key (``cascal serve``'s API key).
        timeout: seconds to wait for the answer (a reload reads and checks the router file).

    Raises:
        cascal.errors.ConfigError: an empty key or a URL that is not http(s).
        cascal.errors.ReloadError: the connection failed (refused, timed out), the key was refused
            (401/403), the gateway has no reload endpoint (404), or any other answer than 200 with JSON.
    """
    import httpx

    target = reload_url(url)
    if not isinstance(key, str) or not key.strip():
        raise ConfigError("reload key: empty; the gateway's reload endpoint needs its key")
    try:
        response = httpx.post(target, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)
    except httpx.ConnectError as exc:
        raise ReloadError(f"{target}: cannot connect ({exc}); is `cascal serve` running there?") from None
    except httpx.TimeoutException:
        raise ReloadError(f"{target}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ReloadError(f"{target}: {type(exc).__name__}: {exc}") from None
    if response.status_code in (401, 403):
        raise ReloadError(f"{target}: the gateway refused the key ({response.status_code}); give the key it runs with")
    if response.status_code == 404:
        raise ReloadError(
            f"{target}: 404, the gateway has no reload endpoint: it runs without a key (hot reload needs "
            "one) or predates hot reload; restart it, or send it SIGHUP"
        )
    if response.status_code != 200:
        raise ReloadError(f"{target}: answered {response.status_code}: {response.text[:300]}")
    try:
        body = response.json()
    except ValueError:
        raise ReloadError(f"{target}: answered 200 without a JSON body: {response.text[:300]!r}") from None
    return body if isinstance(body, dict) else {"answer": body}
