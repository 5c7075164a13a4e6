"""ControlServer over a real Unix socket: dispatch, errors, subscribers, socket safety, peer uid."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import time
from typing import Any

import pytest

from agent.control.client import AsyncControlClient, ControlReplyError
from agent.control.paths import ControlSocketError, default_control_path
from agent.control.protocol import ControlError
from agent.control.server import ControlServer
from agent.errors import RefusedError

TIMEOUT = 20  # seconds any one test may take


class Handler:
    """A session stand-in that records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.slow = asyncio.Event()

    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((cmd, args))
        if cmd == "status":
            return {"state": "waiting", "scope": None, "viewer": None}
        if cmd == "credentials":
            return {"session": "123456789", "password": "k3mx7q"}
        if cmd == "reject":
            raise ControlError("bad_state", "no connection is waiting")
        if cmd == "accept":
            raise RuntimeError("handler bug with secret k3mx7q")
        if cmd == "set_scope":
            return {"scope": args["scope"]}
        if cmd == "terminate":
            await self.slow.wait()  # a slow command on one connection must not hold up the others
            return {}
        return {"ok": "reserved name: a handler bug"}


def run(coro) -> Any:
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


@pytest.fixture
def sock_dir():
    """A short private directory: socket paths must stay under 108 bytes."""
    base = tempfile.mkdtemp(prefix="rjctl-")
    yield os.path.join(base, "run")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir):
    return os.path.join(sock_dir, "control.sock")


async def raw(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(path)


async def ask(reader, writer, data: bytes) -> dict[str, Any]:
    writer.write(data)
    await writer.drain()
    return json.loads(await reader.readline())


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


def test_commands_are_dispatched_and_replies_echo_the_id(sock_path):
    async def main():
        handler = Handler()
        server = ControlServer(handler, sock_path)
        await server.start()
        client = await AsyncControlClient.open(sock_path)
        try:
            assert await client.request("status") == {"id": 1, "ok": True, "state": "waiting", "scope": None,
                                                      "viewer": None}
            reply = await client.request("credentials")
            assert (reply["session"], reply["password"]) == ("123456789", "k3mx7q")
            assert (await client.request("set_scope", scope="control"))["scope"] == "control"
            with pytest.raises(ControlReplyError) as refused:
                await client.request("reject")
            assert (refused.value.code, refused.value.reply["id"]) == ("bad_state", 4)
            assert handler.calls == [("status", {}), ("credentials", {}), ("set_scope", {"scope": "control"}),
                                     ("reject", {})]
        finally:
            await client.close()
            await server.close()
    run(main())


def test_a_refused_error_gets_the_same_reply_as_a_control_error(sock_path):
    """The session raises its own RefusedErrors (agent.errors); a launcher cannot tell them apart."""

    class NotNow(RefusedError):
        code = "bad_state"

    class Refusing:
        async def handle(self, cmd, args):
            if cmd == "reject":
                raise ControlError("bad_state", "no connection is waiting")
            if cmd == "accept":
                raise NotNow("no connection is waiting")
            raise RefusedError("no such thing here", code="not_allowed")

    async def main():
        server = ControlServer(Refusing(), sock_path)
        await server.start()
        reader, writer = await raw(sock_path)
        try:
            old = await ask(reader, writer, b'{"id": 1, "cmd": "reject"}\n')
            new = await ask(reader, writer, b'{"id": 1, "cmd": "accept"}\n')
            assert new == old == {"id": 1, "ok": False,
                                  "error": {"code": "bad_state", "message": "no connection is waiting"}}
            assert await ask(reader, writer, b'{"id": 2, "cmd": "status"}\n') == {
                "id": 2, "ok": False, "error": {"code": "not_allowed", "message": "no such thing here"}}
        finally:
            await close_writer(writer)
            await server.close()
    run(main())


def test_bad_lines_get_error_replies_and_the_connection_carries_on(sock_path):
    async def main():
        handler = Handler()
        server = ControlServer(handler, sock_path, max_line=4096)
        await server.start()
        reader, writer = await raw(sock_path)
        try:
            cases = [
                (b"{oops\n", "bad_json"),
                (b"[]\n", "bad_request"),
                (b'{"id": 5, "cmd": "format_disk"}\n', "unknown_command"),
                (b'{"id": 6, "cmd": "set_scope", "scope": "root"}\n', "bad_argument"),
                (b'{"id": 7, "cmd": "status", "x": "' + b"a" * 10000 + b'"}\n', "line_too_long"),
            ]
            for data, code in cases:
                reply = await ask(reader, writer, data)
                assert reply["ok"] is False and reply["error"]["code"] == code, reply
            assert (await ask(reader, writer, b'{"id": 8, "cmd": "status"}\n'))["state"] == "waiting"
            assert handler.calls == [("status", {})]  # nothing malformed reached the handler
        finally:
            await close_writer(writer)
            await server.close()
    run(main())


def test_handler_failures_become_internal_errors_and_never_leak(sock_path, caplog):
    async def main():
        server = ControlServer(Handler(), sock_path)
        await server.start()
        client = await AsyncControlClient.open(sock_path)
        try:
            for _ in range(2):
                reply = await client.request("accept", check=False)
                assert reply["error"]["code"] == "internal"
                assert "k3mx7q" not in json.dumps(reply)
            # a reply with a reserved field name is a handler bug too
            consent = await client.request("consent", check=False, scope="view", terms_version="v1",
                                           terms_sha256="0" * 64)
            assert consent["error"]["code"] == "internal"
            assert (await client.request("status"))["ok"] is True
        finally:
            await client.close()
            await server.close()
    with caplog.at_level(logging.DEBUG, logger="agent.control.server"):
        run(main())
    assert any(record.exc_info for record in caplog.records)  # traceback kept at debug level


def test_many_concurrent_clients(sock_path):
    async def main():
        handler = Handler()
        server = ControlServer(handler, sock_path)
        await server.start()
        stuck = await AsyncControlClient.open(sock_path)
        stuck_call = asyncio.create_task(stuck.request("terminate"))  # held until handler.slow is set

        async def one(n: int) -> None:
            client = await AsyncControlClient.open(sock_path)
            try:
                for _ in range(10):
                    assert (await client.request("credentials"))["session"] == "123456789"
                reply = await client.request("set_scope", scope="view" if n % 2 else "control")
                assert reply["id"] == 11
            finally:
                await client.close()

        try:
            await asyncio.gather(*(one(n) for n in range(40)))
            assert sum(1 for cmd, _ in handler.calls if cmd == "credentials") == 400
            assert not stuck_call.done()
            handler.slow.set()
            assert (await stuck_call)["ok"] is True
        finally:
            await stuck.close()
            await server.close()
    run(main())


def test_a_subscriber_that_never_reads_is_dropped_without_slowing_publish(sock_path, caplog):
    async def main():
        server = ControlServer(Handler(), sock_path, subscriber_queue=64)
        await server.start()
        good = await AsyncControlClient.open(sock_path)
        await good.request("subscribe")
        received: list[dict[str, Any]] = []

        async def read_all() -> None:
            async for event in good.events():
                received.append(event)

        reader_task = asyncio.create_task(read_all())
        bad_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bad_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        bad_sock.connect(sock_path)
        bad_sock.sendall(b'{"id": 1, "cmd": "subscribe"}\n')
        await asyncio.sleep(0.2)
        assert len(server._subscribers) == 2

        payload = "x" * 2000
        count, slowest, total = 1500, 0.0, 0.0
        for n in range(count):
            start = time.perf_counter()
            server.publish({"event": "stats", "n": n, "pad": payload})
            spent = time.perf_counter() - start
            slowest, total = max(slowest, spent), total + spent
            if n % 4 == 0:
                await asyncio.sleep(0)  # let the pumps and the good reader run, as a live session would
        assert total / count < 0.002, f"publish took {total / count * 1e6:.0f} us on average"
        assert slowest < 0.5
        assert len(server._subscribers) == 1  # the stuck one is gone, connection and all
        deadline = time.monotonic() + 5
        while len(server._clients) > 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

        # the good subscriber gets every event, in order
        deadline = time.monotonic() + 10
        while len(received) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert [event["n"] for event in received] == list(range(count))
        server.publish({"event": "ended", "by": "local", "reason": "done"})

        # the dropped one was disconnected: reading it runs into the end of the stream
        bad_sock.settimeout(5)
        data = b""
        while chunk := await asyncio.get_running_loop().run_in_executor(None, bad_sock.recv, 65536):
            data += chunk
        bad_sock.close()
        lines = data.split(b"\n")
        assert json.loads(lines[0]) == {"id": 1, "ok": True}
        assert len(lines) < count

        await server.close()
        await asyncio.wait_for(reader_task, 5)
        assert received[-1] == {"event": "ended", "by": "local", "reason": "done"}
        await good.close()
    with caplog.at_level(logging.WARNING, logger="agent.control.server"):
        run(main())
    assert any("stopped reading" in record.getMessage() for record in caplog.records)


def test_events_follow_the_subscribe_reply_until_either_side_closes(sock_path):
    async def main():
        server = ControlServer(Handler(), sock_path)
        await server.start()
        server.publish({"event": "state", "state": "waiting"})  # nobody subscribed yet: goes nowhere
        first_reader, first_writer = await raw(sock_path)
        second_reader, second_writer = await raw(sock_path)
        for reader, writer in ((first_reader, first_writer), (second_reader, second_writer)):
            writer.write(b'{"id": "s", "cmd": "subscribe"}\n')
            assert json.loads(await reader.readline()) == {"id": "s", "ok": True}
        server.publish({"event": "state", "state": "active"})
        for reader in (first_reader, second_reader):
            assert json.loads(await reader.readline()) == {"event": "state", "state": "active"}

        # a subscriber that goes away is forgotten at once, not at the next event
        await close_writer(first_writer)
        deadline = time.monotonic() + 5
        while len(server._subscribers) > 1 or len(server._clients) > 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

        # closing the server delivers what was published, then ends the stream
        server.publish({"event": "ended", "by": "local", "reason": "terminated"})
        await server.close()
        assert json.loads(await second_reader.readline())["event"] == "ended"
        assert await second_reader.read() == b""
        await close_writer(second_writer)
    run(main())


def test_close_removes_the_socket_and_disconnects_clients(sock_path):
    async def main():
        server = ControlServer(Handler(), sock_path)
        await server.start()
        reader, writer = await raw(sock_path)
        assert (await ask(reader, writer, b'{"id": 1, "cmd": "status"}\n'))["ok"]
        await server.close()
        assert not os.path.exists(sock_path)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close_writer(writer)
        with pytest.raises(FileNotFoundError):
            await raw(sock_path)
    run(main())


@pytest.mark.parametrize("turns", range(5))
def test_a_connection_arriving_as_close_begins_is_closed_too(sock_path, turns):
    # Python 3.11 leaks a socket accepted in the same loop turn as Server.close(); the
    # client would then wait for an answer or an end that never comes.
    async def main():
        server = ControlServer(Handler(), sock_path)
        await server.start()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(sock_path)
            for _ in range(turns):
                await asyncio.sleep(0)
            await server.close()
            client.settimeout(5)
            try:
                assert client.recv(1) == b""
            except ConnectionResetError:
                pass  # refused before accept: closed all the same
        finally:
            client.close()
    run(main())


def test_socket_is_0600_directory_0700_umask_restored(sock_path, sock_dir):
    async def main():
        umask = os.umask(0o022)
        os.umask(umask)
        server = ControlServer(Handler(), sock_path)
        await server.start()
        try:
            st = os.lstat(sock_path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
            assert stat.S_IMODE(os.lstat(sock_dir).st_mode) == 0o700
            current = os.umask(0o022)
            os.umask(current)
            assert current == umask
        finally:
            await server.close()
    run(main())


def test_stale_socket_is_replaced(sock_path, sock_dir, caplog):
    os.mkdir(sock_dir, 0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)  # an agent that died without cleaning up
    dead.close()
    os.chmod(sock_path, 0o644)  # marks the old file (its inode number may be reused)
    with pytest.raises(ConnectionRefusedError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.connect(sock_path)

    async def main():
        server = ControlServer(Handler(), sock_path)
        await server.start()
        try:
            assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o600
            client = await AsyncControlClient.open(sock_path)
            assert (await client.request("status"))["ok"]
            await client.close()
        finally:
            await server.close()
    with caplog.at_level(logging.INFO, logger="agent.control.server"):
        run(main())
    assert any("stale socket" in record.getMessage() for record in caplog.records)


def test_a_live_agent_is_never_taken_over(sock_path):
    async def main():
        first = ControlServer(Handler(), sock_path)
        await first.start()
        try:
            second = ControlServer(Handler(), sock_path)
            with pytest.raises(ControlSocketError, match="another agent is running on"):
                await second.start()
            client = await AsyncControlClient.open(sock_path)
            assert (await client.request("status"))["ok"]  # the first one still serves
            await client.close()
        finally:
            await first.close()
        # once it is gone the path is free again
        third = ControlServer(Handler(), sock_path)
        await third.start()
        await third.close()
    run(main())


def test_a_live_listener_without_our_lock_is_not_taken_over(sock_path, sock_dir):
    os.mkdir(sock_dir, 0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(sock_path)
        other.listen(1)

        async def main():
            with pytest.raises(ControlSocketError, match="another agent is running on"):
                await ControlServer(Handler(), sock_path).start()
        run(main())
        assert os.path.exists(sock_path)


@pytest.mark.parametrize("problem", ["mode", "owner", "symlink", "not_a_dir", "no_parent"])
def test_unsafe_directory_is_refused(sock_dir, problem):
    base = os.path.dirname(sock_dir)
    target = sock_dir
    if problem == "mode":
        os.mkdir(sock_dir, 0o700)
        os.chmod(sock_dir, 0o750)
        match = "mode 0750"
    elif problem == "owner":
        os.mkdir(sock_dir, 0o700)
        os.chown(sock_dir, os.geteuid() + 4242, -1)
        match = "belongs to uid"
    elif problem == "symlink":
        real = os.path.join(base, "real")
        os.mkdir(real, 0o700)
        os.symlink(real, sock_dir)
        match = "symlink"
    elif problem == "not_a_dir":
        open(sock_dir, "w").close()
        match = "not a directory"
    else:
        target = os.path.join(sock_dir, "deeper")
        match = "parent does not exist"

    async def main():
        await ControlServer(Handler(), os.path.join(target, "control.sock")).start()
    with pytest.raises(ControlSocketError, match=match):
        run(main())
    assert not os.path.exists(os.path.join(target, "control.sock"))


def test_something_else_at_the_socket_path_is_refused(sock_path, sock_dir):
    os.mkdir(sock_dir, 0o700)
    with open(sock_path, "w") as handle:
        handle.write("not a socket")

    async def main():
        await ControlServer(Handler(), sock_path).start()
    with pytest.raises(ControlSocketError, match="is not a socket"):
        run(main())
    with open(sock_path) as handle:
        assert handle.read() == "not a socket"


def test_peer_with_another_uid_is_refused(sock_path, caplog):
    async def main():
        handler = Handler()
        server = ControlServer(handler, sock_path, allowed_uid=os.geteuid() + 1)
        await server.start()
        reader, writer = await raw(sock_path)
        try:
            writer.write(b'{"id": 1, "cmd": "credentials"}\n')
            await writer.drain()
            reply = json.loads(await reader.readline())
            assert reply["ok"] is False and reply["error"]["code"] == "forbidden"
            assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed
            assert handler.calls == []
        finally:
            await close_writer(writer)
            await server.close()
    with caplog.at_level(logging.WARNING, logger="agent.control.server"):
        run(main())
    assert any(f"uid {os.geteuid()}" in record.getMessage() for record in caplog.records)


def test_path_too_long_is_refused():
    with pytest.raises(ControlSocketError, match="longer than"):
        ControlServer(Handler(), "/tmp/" + "d" * 120 + "/control.sock")


def test_default_control_path(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_control_path() == "/run/user/1000/rejnet-agent/control.sock"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    monkeypatch.setenv("HOME", "/home/ala")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert default_control_path() == "/home/ala/.local/state/rejnet-agent/control.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", "/home/ala/state")
    assert default_control_path() == "/home/ala/state/rejnet-agent/control.sock"
    assert not default_control_path().startswith("/tmp/")  # nobody else can pre-create it
