"""Sans-IO relay protocol (DESIGN §4.1): JSON lines before pairing, session ID formatting.

Every connection to the relay opens with one JSON line of at most MAX_LINE
bytes (newline included); the relay answers with JSON lines, and an error
reply is always followed by a close. After ``{"status":"paired"}`` the line
protocol ends and the connection carries opaque bytes.

``LineReader`` splits lines and keeps whatever follows the first line
untouched (a peer may pipeline its first channel bytes behind the hello);
``parse_hello`` and ``parse_reply`` validate one line into an event or raise
RelayProtocolError with a reason fit to send back.
"""
from __future__ import annotations

import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Union

from agent.models import AddressError  # noqa: F401  (re-exported: the relay CLI and tests catch it)
from agent.models import parse_address as _parse_address
from agent.errors import RejnetError, UsageError
from agent.sansio import RemoteProtocolError

VERSION = 1
MAX_LINE = 1024
DEFAULT_PORT = 7400
_MAX_SECRET = 128  # characters of a token or ticket we accept
MIN_TOKEN_LENGTH = 43  # characters of a token new_secret() makes (256 bits); a restarted relay adopts no weaker one

# Reasons the relay sends in {"status":"error","reason":...}; clients match on them.
NO_SUCH_SESSION = "no such session"
SESSION_BUSY = "session busy"
BAD_TOKEN = "bad token"
NO_SUCH_TICKET = "no such ticket"
AGENT_DID_NOT_ANSWER = "agent did not answer"
HELLO_TIMEOUT = "hello timeout"
LINE_TOO_LONG = "line too long"
TOO_MANY_CONNECTIONS = "too many connections"
RATE_LIMITED = "rate limited"  # too many registrations or unknown session IDs from this source: wait and retry
RELAY_FULL = "relay full"      # the relay holds as many sessions as it may
MALFORMED = "malformed hello"
UNSUPPORTED_VERSION = "unsupported version"
SHUTTING_DOWN = "relay shutting down"

_SEPARATORS = re.compile(r"[\s\-]+")
_SESSION_ID = re.compile(r"[1-9][0-9]{8}")
_SECRET = re.compile(r"[A-Za-z0-9_\-]{1,%d}" % _MAX_SECRET)


class RelayError(RejnetError):
    """The relay refused the request or could not be used; ``reason`` is its word for it."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class NoSuchSessionError(RelayError):
    """The relay knows no such session: check the ID the customer read out, or ask them to restart the agent."""


class SessionBusyError(RelayError):
    """Another viewer is already connected to (or connecting to) this session; only one at a time."""


class RelayProtocolError(RelayError, RemoteProtocolError):
    """A line broke the relay protocol (too long, not JSON, wrong fields); the connection is closed."""


class InvalidSessionIdError(UsageError):
    """A session ID is nine digits, e.g. "123 456 789"; spaces and dashes are optional."""


def source_key(address: str) -> str:
    """The unit rate limits count: an IPv6 source by its /64 (one subscriber's LAN, which hands its
    hosts 2^64 addresses), an IPv4 source (or IPv4-mapped IPv6) by its address; anything else as is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def format_session_id(session_id: str) -> str:
    """Group a session ID in threes for people: "123456789" -> "123 456 789"."""
    canonical = parse_session_id(session_id)
    return " ".join(canonical[i:i + 3] for i in range(0, 9, 3))


def parse_session_id(text: str) -> str:
    """The canonical nine digits from what a person typed ("123 456 789", "123-456-789", ...)."""
    canonical = _SEPARATORS.sub("", text) if isinstance(text, str) else ""
    if not _SESSION_ID.fullmatch(canonical):
        raise InvalidSessionIdError("a session ID is nine digits like 123 456 789 (spaces and dashes optional)")
    return canonical


def short_session_id(session_id: str) -> str:
    """The form logs may show: the first three digits only."""
    return session_id[:3] + "…"


def new_session_id() -> str:
    """A random nine-digit ID that does not start with 0 (so it always groups as 3+3+3)."""
    return str(100_000_000 + secrets.randbelow(900_000_000))


def new_secret() -> str:
    """A random token or ticket (URL-safe text, 256 bits)."""
    return secrets.token_urlsafe(32)


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``[IPv6]:PORT`` -> (host, port), the relay's port by default."""
    return _parse_address(text, default_port)


# -- hellos (client -> relay) ---------------------------------------------------------------


@dataclass(frozen=True)
class AgentHello:
    """Register a new session (session and token None), or take back a session after a dropped connection."""

    session: str | None = None
    token: str | None = field(default=None, repr=False)

    def encode(self) -> bytes:
        body: dict[str, Any] = {"v": VERSION, "role": "agent"}
        if self.session is not None:
            body["session"] = self.session
            body["token"] = self.token
        return encode_line(body)


@dataclass(frozen=True)
class ViewerHello:
    session: str

    def encode(self) -> bytes:
        return encode_line({"v": VERSION, "role": "viewer", "session": self.session})


@dataclass(frozen=True)
class AgentDataHello:
    """The agent's data connection answering one viewer's ticket."""

    session: str
    ticket: str = field(repr=False)

    def encode(self) -> bytes:
        return encode_line({"v": VERSION, "role": "agent-data", "session": self.session, "ticket": self.ticket})


Hello = Union[AgentHello, ViewerHello, AgentDataHello]

# -- replies and events (relay -> client) -----------------------------------------------------


@dataclass(frozen=True)
class Registered:
    session: str
    token: str = field(repr=False)

    def encode(self) -> bytes:
        return encode_line({"status": "registered", "session": self.session, "token": self.token})


@dataclass(frozen=True)
class Waiting:
    def encode(self) -> bytes:
        return encode_line({"status": "waiting"})


@dataclass(frozen=True)
class Paired:
    def encode(self) -> bytes:
        return encode_line({"status": "paired"})


@dataclass(frozen=True)
class ViewerArrived:
    """On the agent's control connection: open a data connection with this ticket."""

    ticket: str = field(repr=False)

    def encode(self) -> bytes:
        return encode_line({"event": "viewer", "ticket": self.ticket})


@dataclass(frozen=True)
class Keepalive:
    def encode(self) -> bytes:
        return encode_line({"event": "keepalive"})


@dataclass(frozen=True)
class ErrorReply:
    reason: str

    def encode(self) -> bytes:
        return encode_line({"status": "error", "reason": self.reason})


Reply = Union[Registered, Waiting, Paired, ViewerArrived, Keepalive, ErrorReply]


def encode_line(body: dict[str, Any]) -> bytes:
    line = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"
    if len(line) > MAX_LINE:
        raise ValueError("a relay protocol line is at most 1 KiB")
    return line


class LineReader:
    """Splits the opening lines of a connection, holding at most MAX_LINE bytes of an incomplete one."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max_line = max_line
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_line(self) -> bytes | None:
        """The next complete line (without its newline), None if incomplete; RelayProtocolError if too long."""
        end = self._buf.find(b"\n", 0, self._max_line)
        if end < 0:
            if len(self._buf) >= self._max_line:
                raise RelayProtocolError("a relay protocol line was longer than 1 KiB", LINE_TOO_LONG)
            return None
        line = bytes(self._buf[:end])
        del self._buf[:end + 1]
        return line

    def trailing(self) -> bytes:
        """Everything received after the lines taken so far, untouched; empties the reader."""
        out = bytes(self._buf)
        self._buf.clear()
        return out


def _load(line: bytes) -> dict[str, Any]:
    try:
        body = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RelayProtocolError("a relay protocol line is not JSON", MALFORMED) from None
    if not isinstance(body, dict):
        raise RelayProtocolError("a relay protocol line is not a JSON object", MALFORMED)
    return body


def _text(body: dict[str, Any], key: str, pattern: re.Pattern[str] = _SECRET) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RelayProtocolError(f"missing or malformed {key!r}", MALFORMED)
    return value


def _session(body: dict[str, Any]) -> str:
    value = body.get("session")
    try:
        return parse_session_id(value) if isinstance(value, str) else parse_session_id("")
    except InvalidSessionIdError:
        raise RelayProtocolError("missing or malformed 'session'", MALFORMED) from None


def parse_hello(line: bytes) -> Hello:
    """Validate the opening line of a connection to the relay."""
    body = _load(line)
    version = body.get("v")
    if type(version) is not int:
        raise RelayProtocolError("missing or malformed 'v'", MALFORMED)
    if version != VERSION:
        raise RelayProtocolError(f"protocol version {version} is not supported", UNSUPPORTED_VERSION)
    role = body.get("role")
    if role == "agent":
        if "session" not in body and "token" not in body:
            return AgentHello()
        return AgentHello(_session(body), _text(body, "token"))
    if role == "viewer":
        return ViewerHello(_session(body))
    if role == "agent-data":
        return AgentDataHello(_session(body), _text(body, "ticket"))
    raise RelayProtocolError("missing or unknown 'role'", MALFORMED)


def parse_reply(line: bytes) -> Reply:
    """Validate one line the relay sent to a client."""
    body = _load(line)
    status = body.get("status")
    if status == "registered":
        return Registered(_session(body), _text(body, "token"))
    if status == "waiting":
        return Waiting()
    if status == "paired":
        return Paired()
    if status == "error":
        reason = body.get("reason")
        if not isinstance(reason, str) or len(reason) > 200:
            raise RelayProtocolError("malformed error reply from the relay", MALFORMED)
        return ErrorReply(reason)
    event = body.get("event")
    if event == "viewer":
        return ViewerArrived(_text(body, "ticket"))
    if event == "keepalive":
        return Keepalive()
    raise RelayProtocolError("unexpected line from the relay", MALFORMED)


def error_for(reason: str, session_id: str | None = None) -> RelayError:
    """The exception a client raises for the relay's error reply."""
    shown = f" {format_session_id(session_id)}" if session_id else ""
    if reason == NO_SUCH_SESSION:
        return NoSuchSessionError(f"the relay knows no session{shown}: check the ID the customer read out, "
                                  "or ask them to restart the agent", reason)
    if reason == SESSION_BUSY:
        return SessionBusyError(f"session{shown} already has a viewer connected or connecting", reason)
    if reason == RATE_LIMITED:
        return RelayError("the relay is refusing requests from this network for a while (too many "
                          "registrations or unknown session IDs); wait a minute and try again", reason)
    if reason == RELAY_FULL:
        return RelayError("the relay has no room for another session now; try again later", reason)
    if reason == AGENT_DID_NOT_ANSWER:
        return RelayError(f"the agent of session{shown} did not answer; is it still running?", reason)
    return RelayError(f"the relay refused: {reason}", reason)
