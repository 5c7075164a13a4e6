"""Control socket server: the thin asyncio edge over the sans-IO protocol.

It only moves bytes, checks who is connecting and fans events out. What a
command does is the session's business: every request goes to a
ControlHandler, except ``subscribe``, which is about this connection and is
answered here.

Safety properties kept here:
* the socket sits in a private directory (paths.py) and is bound under a
  umask that makes it 0600 from the first instant;
* each peer's uid is read with SO_PEERCRED; another uid gets an error and is
  disconnected;
* a lock file and a connect probe make sure a live agent's socket is never
  taken over, while a dead agent's stale one is replaced;
* ``publish()`` never waits: a subscriber that stops reading fills its own
  bounded queue and is disconnected, it never slows the session.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
from typing import Any, Protocol

from agent.control.paths import ControlSocketError, check_socket_path, default_control_path, ensure_private_dir
from agent.control.protocol import (
    CLOSED,
    FORBIDDEN,
    INTERNAL,
    MAX_LINE,
    NEED_DATA,
    BadRequest,
    ControlError,
    Request,
    ServerConnection,
    encode_error,
    encode_event,
    encode_reply,
)
from agent.errors import RefusedError
from agent.net import close_stream, stop_server

log = logging.getLogger(__name__)

READ_CHUNK = 65536
PROBE_TIMEOUT = 1.0  # seconds to decide whether an existing socket is alive
CLOSE_GRACE = 1.0  # seconds close() lets subscribers receive their last events
LINGER, LINGER_CHUNKS = 1.0, 16  # how long and how much a refused peer may still send
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlHandler(Protocol):
    """What the session implements: one coroutine per request.

    Returns the reply's fields (without ``id``/``ok``); raises a RefusedError
    (agent.errors) or a ControlError to refuse, and either becomes the error
    reply with its ``code`` and ``message``. Any other exception becomes an
    ``internal`` error reply.
    """

    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]: ...


class _Client:
    """One accepted connection and, once it subscribed, its event queue and pump."""

    def __init__(self, writer: asyncio.StreamWriter, pid: int) -> None:
        self.writer = writer
        self.pid = pid
        self.queue: asyncio.Queue[bytes | None] | None = None
        self.pump: asyncio.Task[None] | None = None

    async def send(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(data)
        await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()


class ControlServer:
    """The agent's control socket; see the module docstring for its guarantees.

    ``allowed_uid`` (default: our effective uid) is the only uid served; it is
    a parameter so tests can exercise the refusal path.
    """

    def __init__(self, handler: ControlHandler, path: str | None = None, *, max_line: int = MAX_LINE,
                 subscriber_queue: int = 256, allowed_uid: int | None = None) -> None:
        if subscriber_queue < 1:
            raise ValueError("subscriber_queue must be at least 1")
        self._handler = handler
        self._path = check_socket_path(path if path is not None else default_control_path())
        self._default_path = path is None
        self._max_line = max_line
        self._queue_size = subscriber_queue
        self._allowed_uid = os.geteuid() if allowed_uid is None else allowed_uid
        self._server: asyncio.AbstractServer | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._clients: dict[asyncio.Task[Any], _Client] = {}
        self._subscribers: set[_Client] = set()

    @property
    def path(self) -> str:
        return self._path

    async def start(self) -> None:
        """Create the socket; raises ControlSocketError if that is not safe or another agent runs."""
        if self._server is not None:
            raise RuntimeError("ControlServer already started")
        ensure_private_dir(os.path.dirname(self._path), create_parents=self._default_path)
        self._lock_fd = self._take_lock()
        try:
            self._remove_stale()
            sock = self._bind()
            try:
                self._server = await asyncio.start_unix_server(self._on_client, sock=sock)
            except BaseException:
                sock.close()
                raise
        except BaseException:
            self._unlink()
            self._release_lock()
            raise
        log.info("control socket listening on %s", self._path)

    def publish(self, event: dict[str, Any]) -> None:
        """Queue an event line for every subscriber; never waits (call it from the event loop's thread)."""
        line = encode_event(event)
        for client in list(self._subscribers):
            assert client.queue is not None
            try:
                client.queue.put_nowait(line)
            except asyncio.QueueFull:
                log.warning("control: dropped a subscriber (pid %d) that stopped reading its events", client.pid)
                self._subscribers.discard(client)
                client.abort()
                assert client.pump is not None
                client.pump.cancel()

    async def close(self) -> None:
        """Stop accepting, let subscribers receive what was published, close every client, remove the socket."""
        server, self._server = self._server, None
        if server is not None:
            await stop_server(server)
        for client in list(self._clients.values()):
            if client in self._subscribers:
                assert client.queue is not None
                try:
                    client.queue.put_nowait(None)  # the pump closes after the queued events
                except asyncio.QueueFull:
                    client.abort()
            else:
                client.writer.close()
        self._subscribers.clear()
        tasks = list(self._clients)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
            for task in pending:
                self._clients[task].abort()
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._unlink()
        self._release_lock()

    # --- connections ---------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        pid, uid = self._peer(writer)
        client = _Client(writer, pid)
        self._clients[task] = client
        try:
            if self._server is None:
                return  # accepted as close() began: the finally below closes it
            if uid != self._allowed_uid:
                log.warning("control: refused a connection from pid %d uid %d (only uid %d is served)",
                            pid, uid, self._allowed_uid)
                await client.send(encode_error(None, FORBIDDEN, "this agent belongs to another user"))
                await self._linger(reader, writer)
                return
            await self._serve(client, reader)
        except OSError:
            pass
        except asyncio.CancelledError:
            # close() cancels us; ending normally keeps asyncio's connection callback from logging it
            pass
        finally:
            self._subscribers.discard(client)
            try:
                if client.pump is not None and not client.pump.done():
                    client.pump.cancel()
                    await asyncio.gather(client.pump, return_exceptions=True)
                await close_stream(writer)  # close() returns only once every socket is released
            finally:
                del self._clients[task]

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Discard what a refused peer already sent: closing with unread input would reset the
        connection and could destroy our error reply before the peer reads it."""
        async def discard() -> None:
            for _ in range(LINGER_CHUNKS):
                if not await reader.read(READ_CHUNK):
                    return

        writer.write_eof()
        try:
            await asyncio.wait_for(discard(), LINGER)
        except asyncio.TimeoutError:
            pass

    async def _serve(self, client: _Client, reader: asyncio.StreamReader) -> None:
        conn = ServerConnection(self._max_line)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                conn.receive_data(await reader.read(READ_CHUNK))
            elif event is CLOSED:
                return
            elif isinstance(event, BadRequest):
                await client.send(encode_error(event.id, event.code, event.message))
            elif isinstance(event, Request) and event.cmd == "subscribe":
                client.writer.write(encode_reply(event.id))
                self._subscribe(client)  # no await since the reply: events follow it
                await client.writer.drain()
            elif isinstance(event, Request):
                await client.send(await self._dispatch(event))

    async def _dispatch(self, request: Request) -> bytes:
        try:
            fields = await self._handler.handle(request.cmd, dict(request.args))
            return encode_reply(request.id, fields or {})
        except (RefusedError, ControlError) as exc:
            return encode_error(request.id, exc.code, exc.message)
        except Exception:  # a bug in the handler must not take the agent down
            log.debug("control: handler failed on %r", request.cmd, exc_info=True)
            return encode_error(request.id, INTERNAL, f"the agent failed to carry out {request.cmd!r}; see its log")

    def _subscribe(self, client: _Client) -> None:
        if client.queue is not None or self._server is None:
            return
        client.queue = asyncio.Queue(self._queue_size)
        client.pump = asyncio.create_task(self._pump(client))
        self._subscribers.add(client)

    async def _pump(self, client: _Client) -> None:
        assert client.queue is not None
        try:
            while (line := await client.queue.get()) is not None and not client.writer.is_closing():
                await client.send(line)
        except OSError:
            pass
        finally:
            self._subscribers.discard(client)
            client.writer.close()  # the reading side then sees the end and finishes the connection

    @staticmethod
    def _peer(writer: asyncio.StreamWriter) -> tuple[int, int]:
        sock = writer.get_extra_info("socket")
        try:
            pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        except OSError:
            return 0, -1  # unknown peer: refused like any other uid
        return pid, uid

    # --- the socket file -----------------------------------------------------

    def _take_lock(self) -> int:
        lock_path = self._path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ControlSocketError(f"cannot open lock file {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ControlSocketError(f"another agent is running on {self._path}") from None
        return fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self._path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlSocketError(f"{self._path} exists and is not a socket; remove it or choose another path")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(PROBE_TIMEOUT)
            try:
                probe.connect(self._path)
            except ConnectionRefusedError:
                os.unlink(self._path)
                log.info("control: replaced the stale socket of an agent that is gone: %s", self._path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:  # a timeout too: a live agent with a full backlog
                raise ControlSocketError(f"cannot tell whether {self._path} is in use: {exc}") from None
        raise ControlSocketError(f"another agent is running on {self._path}")

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # 0600 from the moment the file exists
        try:
            sock.bind(self._path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:  # lost a race to another agent
                raise ControlSocketError(f"another agent is running on {self._path}") from None
            raise ControlSocketError(f"cannot create control socket {self._path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        st = os.lstat(self._path)
        self._inode = (st.st_dev, st.st_ino)
        return sock

    def _unlink(self) -> None:
        """Remove the socket file, unless it is no longer the one we created."""
        if self._inode is None:
            return
        try:
            st = os.lstat(self._path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self._path)
        except FileNotFoundError:
            pass
        self._inode = None
