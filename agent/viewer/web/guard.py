"""Who may talk to the technician's console: the one browser tab rejnet-viewer opened, nobody else.

Every request is checked here before anything is served, and all checks must pass:

* the peer is a loopback address (the server binds loopback only; this is the second lock);
* the ``Host`` header names this very server by a loopback name, so a DNS-rebinding page
  (``evil.example`` resolving to 127.0.0.1) is refused;
* an ``Origin`` header, when present, is this server's own origin; a WebSocket must carry one
  (browsers always send it), so a page in another tab cannot open the screen's socket;
* the first path segment is the random per-run token, compared in constant time, so another
  local user or a page guessing ports gets nothing but 404.

Sans-IO: plain functions over the request's parts, tested without a server.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Mapping

TOKEN_BYTES = 32  # 256 bits, URL-safe base64 in the URL
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused; ``reason`` never contains the token or the request's path."""

    status: int
    reason: str


NOT_FOUND = Refusal(404, "not found")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def allowed_hosts(port: int) -> frozenset[str]:
    """``Host`` header values that name this server."""
    return frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)


def allowed_origins(port: int) -> frozenset[str]:
    return frozenset(f"http://{name}:{port}" for name in LOOPBACK_NAMES)


def split_token(path: str) -> tuple[str, str]:
    """``/TOKEN/rest?query`` -> (``TOKEN``, ``rest``); the query is dropped (we serve none)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return "", ""
    head, _, rest = path[1:].partition("/")
    return head, rest


def token_matches(given: str, token: str) -> bool:
    """Constant time in the token's content (hmac.compare_digest)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of a header (websockets' Headers may hold several; a dict holds one)."""
    get_all = getattr(headers, "get_all", None)
    if get_all is not None:
        return list(get_all(name))
    value = headers.get(name)
    return [] if value is None else [value]


def check(*, path: str, headers: Mapping[str, str], peer: str | None, port: int, token: str,
          websocket: bool) -> tuple[Refusal | None, str]:
    """(None, resource) when the request may be served, else (Refusal, "").

    ``headers`` is looked up case-insensitively by the caller's mapping (websockets' Headers is);
    a plain dict must use the canonical names ``Host`` and ``Origin``.
    """
    if not is_loopback(peer):
        return Refusal(403, "only this computer may connect"), ""
    hosts, origins = _values(headers, "Host"), _values(headers, "Origin")
    if len(hosts) != 1 or hosts[0].lower() not in allowed_hosts(port):
        return Refusal(403, "wrong Host header"), ""
    if len(origins) > 1:
        return Refusal(403, "more than one Origin"), ""
    origin = origins[0] if origins else None
    if origin is not None and origin.lower() not in allowed_origins(port):
        return Refusal(403, "foreign Origin"), ""
    if websocket and origin is None:
        return Refusal(403, "a WebSocket needs an Origin"), ""
    given, resource = split_token(path)
    if not token_matches(given, token):
        return NOT_FOUND, ""
    return None, resource
