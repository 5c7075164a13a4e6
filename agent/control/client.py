"""Control socket clients: a blocking one for ``rejnet-agent ctl`` and scripts, an asyncio one for launchers.

Both speak through the sans-IO ClientConnection; they only add the socket,
the timeouts, and the pairing of each reply with its request (event lines
that arrive meanwhile are kept for ``events()``).
"""
from __future__ import annotations

import asyncio
import collections
import socket
import time
from typing import Any, AsyncIterator, Iterator

from agent.control.paths import default_control_path
from agent.control.protocol import (
    CLOSED,
    NEED_DATA,
    ClientConnection,
    Event,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
)
from agent.errors import RejnetError, UsageError
from agent.net import close_stream

READ_CHUNK = 65536


class ControlClientError(RejnetError):
    """Talking to the agent failed: it closed the connection or sent something unreadable."""


class AgentNotRunningError(ControlClientError):
    """No agent listens on the control socket; start one, or pass the right ``--control PATH``."""


class ControlTimeoutError(ControlClientError):
    """The agent did not answer in time; it may be stuck or busy. Retry, or raise ``--timeout``."""


class ControlReplyError(ControlClientError):
    """The agent refused the command; ``code`` and ``message`` say why, ``reply`` is the whole answer."""

    def __init__(self, cmd: str, reply: dict[str, Any]) -> None:
        error = reply["error"]
        super().__init__(f"{cmd}: {error['code']}: {error['message']}")
        self.code: str = error["code"]
        self.message: str = error["message"]
        self.reply = reply


def _connect_error(path: str, exc: OSError) -> ControlClientError:
    if isinstance(exc, FileNotFoundError):
        return AgentNotRunningError(f"no agent is running (no control socket at {path})")
    if isinstance(exc, ConnectionRefusedError):
        return AgentNotRunningError(f"no agent is running on {path} (the socket is left over from one that ended)")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return ControlTimeoutError(f"the agent on {path} does not accept connections")
    if isinstance(exc, PermissionError):
        return ControlClientError(f"not allowed to use the control socket {path}")
    return ControlClientError(f"cannot connect to {path}: {exc.strerror or exc}")


def _request_bytes(conn: ClientConnection, cmd: str, args: dict[str, Any]) -> tuple[int, bytes]:
    try:
        return conn.send_request(cmd, args)
    except LocalProtocolError as exc:
        raise UsageError(str(exc)) from None


def _answers(reply: Reply, request_id: int) -> bool:
    # an error with id null answers whatever we asked (forbidden peer, overlong line)
    return reply.id == request_id or (reply.id is None and not reply.ok)


def _finish(cmd: str, reply: Reply, check: bool) -> dict[str, Any]:
    answer = reply.as_dict()
    if check and not reply.ok:
        raise ControlReplyError(cmd, answer)
    return answer


class ControlClient:
    """Blocking client; connects at once. ``timeout`` bounds the connect and each request."""

    def __init__(self, path: str | None = None, *, timeout: float = 5.0) -> None:
        self.path = path if path is not None else default_control_path()
        self.timeout = timeout
        self._conn = ClientConnection()
        self._events: collections.deque[Event] = collections.deque()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            raise _connect_error(self.path, exc) from None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def request(self, cmd: str, *, check: bool = True, **args: Any) -> dict[str, Any]:
        """Send one command and return the whole reply; an error reply raises ControlReplyError when ``check``."""
        request_id, data = _request_bytes(self._conn, cmd, args)
        deadline = time.monotonic() + self.timeout
        try:
            self._sock.sendall(data)
            while True:
                item = self._next(deadline)
                if isinstance(item, Event):
                    self._events.append(item)
                elif _answers(item, request_id):
                    return _finish(cmd, item, check)
        except (socket.timeout, TimeoutError):
            raise ControlTimeoutError(f"the agent did not answer {cmd!r} within {self.timeout:g} s") from None
        except OSError as exc:
            raise ControlClientError(f"lost the connection to the agent: {exc.strerror or exc}") from None

    def events(self, idle_timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield event objects (after ``subscribe``) until the agent closes the connection."""
        while True:
            if self._events:
                yield self._events.popleft().as_dict()
                continue
            deadline = None if idle_timeout is None else time.monotonic() + idle_timeout
            try:
                item = self._next(deadline, eof_ok=True)
            except (socket.timeout, TimeoutError):
                raise ControlTimeoutError(f"no event from the agent within {idle_timeout:g} s") from None
            except OSError as exc:
                raise ControlClientError(f"lost the connection to the agent: {exc.strerror or exc}") from None
            if item is None:
                return
            if isinstance(item, Event):
                yield item.as_dict()

    def _next(self, deadline: float | None, eof_ok: bool = False) -> Reply | Event | None:
        while True:
            try:
                item = self._conn.next_event()
            except RemoteProtocolError as exc:
                raise ControlClientError(str(exc)) from None
            if item is CLOSED:
                if eof_ok:
                    return None
                raise ControlClientError("the agent closed the connection without answering")
            if item is not NEED_DATA:
                assert isinstance(item, (Reply, Event))
                return item
            if deadline is None:
                self._sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._sock.settimeout(remaining)
            self._conn.receive_data(self._sock.recv(READ_CHUNK))


class AsyncControlClient:
    """asyncio client for launchers written with asyncio; open it with ``await AsyncControlClient.open()``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._reader = reader
        self._writer = writer
        self._conn = ClientConnection()
        self._events: collections.deque[Event] = collections.deque()

    @classmethod
    async def open(cls, path: str | None = None, *, timeout: float = 5.0) -> AsyncControlClient:
        path = path if path is not None else default_control_path()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
        except asyncio.TimeoutError:
            raise ControlTimeoutError(f"the agent on {path} does not accept connections") from None
        except OSError as exc:
            raise _connect_error(path, exc) from None
        return cls(reader, writer, path, timeout)

    async def close(self) -> None:
        await close_stream(self._writer)

    async def request(self, cmd: str, *, check: bool = True, **args: Any) -> dict[str, Any]:
        """As ControlClient.request."""
        request_id, data = _request_bytes(self._conn, cmd, args)
        try:
            reply = await asyncio.wait_for(self._exchange(request_id, data), self.timeout)
        except asyncio.TimeoutError:
            raise ControlTimeoutError(f"the agent did not answer {cmd!r} within {self.timeout:g} s") from None
        except OSError as exc:
            raise ControlClientError(f"lost the connection to the agent: {exc.strerror or exc}") from None
        return _finish(cmd, reply, check)

    async def _exchange(self, request_id: int, data: bytes) -> Reply:
        self._writer.write(data)
        await self._writer.drain()
        while True:
            item = await self._next()
            if item is None:
                raise ControlClientError("the agent closed the connection without answering")
            if isinstance(item, Event):
                self._events.append(item)
            elif _answers(item, request_id):
                return item

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Yield event objects (after ``subscribe``) until the agent closes the connection."""
        while True:
            if self._events:
                yield self._events.popleft().as_dict()
                continue
            try:
                item = await self._next()
            except OSError as exc:
                raise ControlClientError(f"lost the connection to the agent: {exc.strerror or exc}") from None
            if item is None:
                return
            if isinstance(item, Event):
                yield item.as_dict()

    async def _next(self) -> Reply | Event | None:
        while True:
            try:
                item = self._conn.next_event()
            except RemoteProtocolError as exc:
                raise ControlClientError(str(exc)) from None
            if item is CLOSED:
                return None
            if item is not NEED_DATA:
                assert isinstance(item, (Reply, Event))
                return item
            self._conn.receive_data(await self._reader.read(READ_CHUNK))
