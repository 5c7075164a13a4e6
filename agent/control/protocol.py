"""Control socket protocol (DESIGN §4.4), sans-IO: JSON lines in, events out, bytes back.

This module owns the wire format between the launcher and the agent. Nothing
here touches a socket: the asyncio server and the clients feed it bytes and
write the bytes it returns, so every rule below is testable byte for byte.

Wire format, one JSON object per ``\\n``-terminated line, at most ``MAX_LINE``
bytes a line:

* request: ``{"id": 1, "cmd": "consent", "scope": "view", ...}``; the
  arguments sit beside ``cmd`` (flat, named plainly). ``id`` is an integer or
  a short string, echoed in the reply; it may be omitted (then ``null``).
* reply: ``{"id": 1, "ok": true, ...fields}`` or
  ``{"id": 1, "ok": false, "error": {"code": "...", "message": "..."}}``.
* event (only after ``subscribe``): ``{"event": "<name>", ...fields}``. A
  subscription lasts as long as the connection; a subscriber that closes its
  sending side is taken to have gone.

A malformed request is not fatal: the server side yields a ``BadRequest``
naming the error code, answers it and reads on. Only the peer sending
garbage *replies* (client side) raises ``RemoteProtocolError``.

Events the session publishes (the contract ``ctl events`` relies on):
``{"event": "state", "state": ...}``, ``{"event": "viewer", "address": ...}``,
``{"event": "password_rotated"}``, ``{"event": "stats", ...}`` and, last,
``{"event": "ended", "by": "local" | "remote", "reason": str}``. An ``ended``
event with ``by == "remote"`` or ``reason == "consent_refused"`` means the
session was ended by the other side or consent was refused (exit code 4).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from agent.consent.ledger import SCOPES
from agent.consent.terms import VERSION_MAX, is_version_name
from agent.sansio import NEED_DATA, LocalProtocolError, NeedData, RemoteProtocolError

MAX_LINE = 65536
"""Largest line accepted, in bytes, without its newline."""

TERMINATE_REASON_MAX = 200
REQUEST_ID_MAX = 64

# Error codes of error replies.
LINE_TOO_LONG = "line_too_long"
BAD_JSON = "bad_json"
BAD_REQUEST = "bad_request"
UNKNOWN_COMMAND = "unknown_command"
BAD_ARGUMENT = "bad_argument"
FORBIDDEN = "forbidden"
INTERNAL = "internal"

EVENT_ENDED = "ended"
REMOTE_END_REASONS = frozenset({"consent_refused"})

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class ControlError(Exception):
    """Raised by a command handler to refuse a command; becomes an error reply.

    ``code`` is a short machine-readable word (``bad_state``, ``ledger_unavailable``
    ...) and ``message`` one line for a person; neither may contain a secret.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --- events of the reader ----------------------------------------------------

RequestId = Union[int, str, None]


@dataclass(frozen=True)
class Request:
    """A valid request: command name and its validated arguments."""

    id: RequestId
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BadRequest:
    """A line that is not a valid request; answer it with an error reply and read on."""

    id: RequestId
    code: str
    message: str


@dataclass(frozen=True)
class Reply:
    """A reply received by a client: ``ok`` and the other fields as sent."""

    id: RequestId
    ok: bool
    fields: dict[str, Any]

    @property
    def error_code(self) -> str | None:
        return None if self.ok else self.fields["error"]["code"]

    @property
    def error_message(self) -> str | None:
        return None if self.ok else self.fields["error"]["message"]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, **self.fields}


@dataclass(frozen=True)
class Event:
    """An event line received by a subscribed client."""

    name: str
    fields: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.name, **self.fields}


class _Closed:
    def __repr__(self) -> str:
        return "CLOSED"


CLOSED = _Closed()
"""next_event(): the peer closed its side and every line has been read."""


# --- argument validation (data, one row per command) -------------------------

def _scope(value: Any) -> str:
    if value not in SCOPES:
        raise ValueError("must be 'view' or 'control'")
    return value


def _terms_version(value: Any) -> str:
    if not is_version_name(value):
        raise ValueError(f"must be a terms version name like 'pomoc-zdalna-v1' (at most {VERSION_MAX} characters)")
    return value


def _sha256_hex(value: Any) -> str:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ValueError("must be a SHA-256 digest, 64 hex digits")
    return value.lower()


def _reason(value: Any) -> str:
    if not isinstance(value, str) or len(value) > TERMINATE_REASON_MAX:
        raise ValueError(f"must be a string of at most {TERMINATE_REASON_MAX} characters")
    return value


_Validator = Callable[[Any], Any]
# cmd -> {argument: (validator, required)}
COMMANDS: dict[str, dict[str, tuple[_Validator, bool]]] = {
    "status": {},
    "credentials": {},
    "consent": {"scope": (_scope, True), "terms_version": (_terms_version, True), "terms_sha256": (_sha256_hex, True)},
    "accept": {},
    "reject": {},
    "set_scope": {"scope": (_scope, True)},
    "terminate": {"reason": (_reason, False)},
    "subscribe": {},
}


def validate_args(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """Check a command's arguments against its row in COMMANDS; returns them normalised.

    Raises KeyError for an unknown command and ValueError (message names the
    argument) for a missing, unexpected or malformed one.
    """
    spec = COMMANDS[cmd]
    unexpected = sorted(set(args) - set(spec))
    if unexpected:
        raise ValueError(f"{cmd}: unexpected argument {unexpected[0]!r}")
    clean: dict[str, Any] = {}
    for name, (check, required) in spec.items():
        if name not in args:
            if required:
                raise ValueError(f"{cmd}: missing argument {name!r}")
            continue
        try:
            clean[name] = check(args[name])
        except ValueError as exc:
            raise ValueError(f"{cmd}: argument {name!r} {exc}") from None
    return clean


# --- serialisation -----------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(line: bytes) -> Any:
    # NaN/Infinity are not JSON; deep nesting raises RecursionError in the decoder.
    return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)


def _dumps(obj: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"not serialisable as a control line: {exc}") from None
    return text.encode("ascii") + b"\n"


def _check_id(request_id: RequestId) -> None:
    if request_id is None or isinstance(request_id, str) and len(request_id) <= REQUEST_ID_MAX:
        return
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        return
    raise LocalProtocolError(f"invalid request id {request_id!r}")


def encode_request(request_id: RequestId, cmd: str, args: dict[str, Any] | None = None) -> bytes:
    """One request line; the arguments are validated as the server will."""
    _check_id(request_id)
    try:
        clean = validate_args(cmd, dict(args or {}))
    except KeyError:
        raise LocalProtocolError(f"unknown command {cmd!r}") from None
    except ValueError as exc:
        raise LocalProtocolError(str(exc)) from None
    return _dumps({"id": request_id, "cmd": cmd, **clean})


def encode_reply(request_id: RequestId, fields: dict[str, Any] | None = None) -> bytes:
    """A success reply; ``fields`` may not use the reserved names id, ok, error, event."""
    fields = dict(fields or {})
    reserved = {"id", "ok", "error", "event"} & set(fields)
    if reserved:
        raise LocalProtocolError(f"reply field {sorted(reserved)[0]!r} is reserved")
    return _dumps({"id": request_id, "ok": True, **fields})


def encode_error(request_id: RequestId, code: str, message: str) -> bytes:
    return _dumps({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def encode_event(event: dict[str, Any]) -> bytes:
    """An event line; ``event["event"]`` names it."""
    name = event.get("event")
    if not isinstance(name, str) or not name:
        raise LocalProtocolError("an event needs a non-empty 'event' name")
    if {"id", "ok"} & set(event):
        raise LocalProtocolError("an event may not carry 'id' or 'ok'")
    return _dumps(event)


# --- line splitting with a cap -----------------------------------------------

class _LineBuffer:
    """Splits a byte stream into lines, each at most ``max_line`` bytes.

    An overlong line is reported once (``TOO_LONG``) and the rest of it, up to
    its newline, is dropped without being kept in memory.
    """

    TOO_LONG = object()

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max = max_line
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no newline
        self._discarding = False
        self._eof = False

    def feed(self, data: bytes) -> None:
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        if not data:
            self._eof = True
            return
        self._buf += data

    def next_line(self) -> bytes | object | None:
        """A line (without newline), TOO_LONG, CLOSED at the end, or None for need-more-data."""
        while True:
            newline = self._buf.find(b"\n", self._scanned)
            if self._discarding:
                if newline < 0:
                    self._buf.clear()
                    self._scanned = 0
                    return CLOSED if self._eof else None
                del self._buf[: newline + 1]
                self._scanned = 0
                self._discarding = False
                continue
            if newline < 0:
                self._scanned = len(self._buf)
                if len(self._buf) > self._max + 1:  # +1: room for a "\r" before the newline
                    self._buf.clear()
                    self._scanned = 0
                    self._discarding = True
                    return self.TOO_LONG
                if self._eof:
                    if self._buf.strip():  # an unterminated last line still counts
                        line = bytes(self._buf)
                        self._buf.clear()
                        self._scanned = 0
                        return line if len(line) <= self._max else self.TOO_LONG
                    self._buf.clear()
                    return CLOSED
                return None
            line = bytes(self._buf[:newline])
            del self._buf[: newline + 1]
            self._scanned = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self._max:
                return self.TOO_LONG
            if line.strip():
                return line
            # blank lines are ignored


def _parse_request(line: bytes) -> Request | BadRequest:
    try:
        obj = _loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return BadRequest(None, BAD_JSON, "the line is not valid JSON")
    if not isinstance(obj, dict):
        return BadRequest(None, BAD_REQUEST, "a request must be a JSON object")
    request_id = obj.pop("id", None)
    try:
        _check_id(request_id)
    except LocalProtocolError:
        return BadRequest(None, BAD_REQUEST, f"'id' must be an integer or a string of at most {REQUEST_ID_MAX} characters")
    cmd = obj.pop("cmd", None)
    if not isinstance(cmd, str):
        return BadRequest(request_id, BAD_REQUEST, "a request needs a 'cmd' string")
    if cmd not in COMMANDS:
        shown = cmd if len(cmd) <= 40 else cmd[:40] + "..."
        return BadRequest(request_id, UNKNOWN_COMMAND, f"unknown command {shown!r}; known: {', '.join(COMMANDS)}")
    try:
        args = validate_args(cmd, obj)
    except ValueError as exc:
        return BadRequest(request_id, BAD_ARGUMENT, str(exc))
    return Request(request_id, cmd, args)


class ServerConnection:
    """Agent side of one control connection: request lines in, reply and event bytes out.

    ``receive_data(b"")`` signals EOF; ``next_event()`` then drains the lines
    already received and returns CLOSED.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._lines = _LineBuffer(max_line)
        self._max_line = max_line

    def receive_data(self, data: bytes) -> None:
        self._lines.feed(data)

    def next_event(self) -> Request | BadRequest | NeedData | _Closed:
        line = self._lines.next_line()
        if line is None:
            return NEED_DATA
        if line is CLOSED:
            return CLOSED
        if line is _LineBuffer.TOO_LONG:
            return BadRequest(None, LINE_TOO_LONG, f"a request line may be at most {self._max_line} bytes")
        assert isinstance(line, bytes)
        return _parse_request(line)

    send_reply = staticmethod(encode_reply)
    send_error = staticmethod(encode_error)
    send_event = staticmethod(encode_event)


class ClientConnection:
    """Launcher/ctl side: request bytes out, replies and events in.

    Anything the agent sends that is not a reply or an event raises
    RemoteProtocolError; after that the connection is unusable.
    """

    def __init__(self, max_line: int = 4 * MAX_LINE) -> None:
        self._lines = _LineBuffer(max_line)
        self._next_id = 1
        self._broken = False

    def send_request(self, cmd: str, args: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """Returns the id given to the request and its bytes."""
        request_id = self._next_id
        data = encode_request(request_id, cmd, args)
        self._next_id += 1
        return request_id, data

    def receive_data(self, data: bytes) -> None:
        self._lines.feed(data)

    def next_event(self) -> Reply | Event | NeedData | _Closed:
        if self._broken:
            raise RemoteProtocolError("the connection already failed")
        try:
            return self._next()
        except RemoteProtocolError:
            self._broken = True
            raise

    def _next(self) -> Reply | Event | NeedData | _Closed:
        line = self._lines.next_line()
        if line is None:
            return NEED_DATA
        if line is CLOSED:
            return CLOSED
        if line is _LineBuffer.TOO_LONG:
            raise RemoteProtocolError("the agent sent an overlong line")
        assert isinstance(line, bytes)
        try:
            obj = _loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RemoteProtocolError("the agent sent a line that is not JSON") from None
        if not isinstance(obj, dict):
            raise RemoteProtocolError("the agent sent a line that is not a JSON object")
        if "event" in obj:
            name = obj.pop("event")
            if not isinstance(name, str):
                raise RemoteProtocolError("the agent sent an event without a name")
            return Event(name, obj)
        ok = obj.pop("ok", None)
        request_id = obj.pop("id", None)
        if not isinstance(ok, bool):
            raise RemoteProtocolError("the agent sent a reply without 'ok'")
        if not ok:
            error = obj.get("error")
            if not (isinstance(error, dict) and isinstance(error.get("code"), str)
                    and isinstance(error.get("message"), str)):
                raise RemoteProtocolError("the agent sent an error reply without code and message")
        return Reply(request_id, ok, obj)


def ends_by_other_side(event: Event) -> bool:
    """True for the ``ended`` event of a session ended by the technician or refused consent."""
    if event.name != EVENT_ENDED:
        return False
    return event.fields.get("by") == "remote" or event.fields.get("reason") in REMOTE_END_REASONS

