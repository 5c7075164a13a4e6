"""rejnet-relay over loopback: registration, pairing, forwarding, every refusal and timeout, and the CLI."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, TypeVar

import pytest
from tests.support.processes import free_port

from agent.relay import protocol as p
from agent.relay.client import AgentRegistration, open_agent_data, open_viewer
from agent.relay.protocol import NoSuchSessionError, RelayError, SessionBusyError
from agent.relay.server import RelayServer

T = TypeVar("T")
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
ROOT = Path(__file__).resolve().parents[2]


def run(coro: Awaitable[T], timeout: float = 20) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def relay(**options: Any) -> RelayServer:
    server = RelayServer("127.0.0.1", 0, **options)
    await server.start()
    return server


async def connect(server: RelayServer, hello: bytes | dict | None = None) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    if hello is not None:
        writer.write(hello if isinstance(hello, bytes) else json.dumps(hello).encode() + b"\n")
    return reader, writer


async def line(reader: asyncio.StreamReader, timeout: float = 5) -> dict:
    raw = await asyncio.wait_for(reader.readline(), timeout)
    assert raw.endswith(b"\n"), f"connection ended: {raw!r}"
    return json.loads(raw)


async def error_then_close(reader: asyncio.StreamReader) -> str:
    reply = await line(reader)
    assert reply["status"] == "error"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the relay closes after an error
    return reply["reason"]


async def register(server: RelayServer) -> tuple[Conn, str, str]:
    conn = await connect(server, {"v": 1, "role": "agent"})
    reply = await line(conn[0])
    assert reply["status"] == "registered"
    return conn, reply["session"], reply["token"]


async def ask(server: RelayServer, control: Conn, session: str) -> tuple[Conn, str]:
    """A viewer asks for the session: it is told to wait, and the agent's control connection gets a ticket."""
    viewer = await connect(server, {"v": 1, "role": "viewer", "session": p.format_session_id(session)})
    assert await line(viewer[0]) == {"status": "waiting"}
    event = await line(control[0])
    assert event["event"] == "viewer"
    return viewer, event["ticket"]


async def answer(server: RelayServer, session: str, ticket: str, viewer: Conn) -> Conn:
    """The agent's data connection answers ``ticket``: it and the waiting viewer are paired."""
    agent = await connect(server, {"v": 1, "role": "agent-data", "session": session, "ticket": ticket})
    assert await line(agent[0]) == {"status": "paired"}
    assert await line(viewer[0]) == {"status": "paired"}
    return agent


async def pair(server: RelayServer, control: Conn, session: str) -> tuple[Conn, Conn]:
    viewer, ticket = await ask(server, control, session)
    return viewer, await answer(server, session, ticket, viewer)


async def close_all(*writers: asyncio.StreamWriter) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def test_register_pair_forward_and_half_close() -> None:
    async def main() -> None:
        server = await relay()
        assert server.address == ("127.0.0.1", server.port) and server.port > 0
        control, session, token = await register(server)
        assert len(session) == 9 and session.isdigit() and session[0] != "0" and len(token) >= 32
        (vr, vw), (ar, aw) = await pair(server, control, session)
        vw.write(b"\x00viewer->agent" * 1000)
        aw.write(b"\xffagent->viewer" * 1000)
        assert await ar.readexactly(14000) == b"\x00viewer->agent" * 1000
        assert await vr.readexactly(14000) == b"\xffagent->viewer" * 1000
        vw.write_eof()  # the viewer is done sending; the agent may still answer
        assert await asyncio.wait_for(ar.read(), 5) == b""
        aw.write(b"late answer")
        await aw.drain()
        assert await vr.readexactly(11) == b"late answer"
        aw.close()
        assert await asyncio.wait_for(vr.read(), 5) == b""
        assert server.stats.paired == 1 and server.stats.bytes_forwarded == 28011
        await close_all(vw, aw, control[1])
        await server.close()

    run(main())


def test_client_helpers_end_to_end() -> None:
    async def main() -> None:
        server = await relay()
        registration = await AgentRegistration.register("127.0.0.1", server.port)

        async def agent() -> bytes:
            async for ticket in registration.tickets():
                reader, writer = await open_agent_data("127.0.0.1", server.port, registration.session_id, ticket)
                writer.write(b"RFB 003.008\n")
                data = await reader.readexactly(5)
                await close_all(writer)
                return data
            raise AssertionError("no ticket")

        task = asyncio.create_task(agent())
        reader, writer = await open_viewer("127.0.0.1", server.port,
                                           p.format_session_id(registration.session_id))
        writer.write(b"hello")
        assert await reader.readexactly(12) == b"RFB 003.008\n"
        assert await task == b"hello"
        await close_all(writer)
        await registration.close()
        await server.close()

    run(main())


def test_viewer_bytes_sent_before_pairing_are_delivered() -> None:
    async def main() -> None:
        server = await relay()
        control, session, _ = await register(server)
        vr, vw = await connect(server, b'{"v":1,"role":"viewer","session":"%s"}\nEARLY' % session.encode())
        assert await line(vr) == {"status": "waiting"}
        vw.write(b" BYTES")
        event = await line(control[0])
        ar, aw = await connect(server, {"v": 1, "role": "agent-data", "session": session, "ticket": event["ticket"]})
        assert await line(ar) == {"status": "paired"}
        assert await ar.readexactly(11) == b"EARLY BYTES"
        await close_all(vw, aw, control[1])
        await server.close()

    run(main())


def test_unknown_session() -> None:
    async def main() -> None:
        server = await relay()
        reader, writer = await connect(server, {"v": 1, "role": "viewer", "session": "123456789"})
        assert await error_then_close(reader) == "no such session"
        with pytest.raises(NoSuchSessionError):
            await open_viewer("127.0.0.1", server.port, "123 456 789")
        await close_all(writer)
        await server.close()

    run(main())


def test_several_viewers_may_ask_up_to_the_cap() -> None:
    """Issue #11 A: a viewer may ask while another is pending (the agent decides who wins), up to
    MAX_VIEWERS_PER_SESSION in all and MAX_VIEWERS_PER_SESSION_PER_SOURCE from one source."""
    from agent.relay.server import MAX_VIEWERS_PER_SESSION_PER_SOURCE

    async def main() -> None:
        server = await relay()
        control, session, _ = await register(server)
        waiting = []
        for _ in range(MAX_VIEWERS_PER_SESSION_PER_SOURCE):
            conn = await connect(server, {"v": 1, "role": "viewer", "session": session})
            assert await line(conn[0]) == {"status": "waiting"}
            waiting.append(conn)
        tickets = {(await line(control[0]))["ticket"] for _ in waiting}
        assert len(tickets) == MAX_VIEWERS_PER_SESSION_PER_SOURCE  # one ticket each
        over = await connect(server, {"v": 1, "role": "viewer", "session": session})
        assert await error_then_close(over[0]) == "session busy"  # this source's share is used up
        with pytest.raises(SessionBusyError):
            await open_viewer("127.0.0.1", server.port, session)
        await close_all(over[1], *(w for _, w in waiting))
        for _ in range(100):
            if not server._sessions[session].waiting:
                break
            await asyncio.sleep(0.01)
        (vr, vw), (ar, aw) = await pair(server, control, session)
        await close_all(vw, aw, control[1])
        await server.close()

    run(main())


def test_failed_attempt_costs_a_data_connection_not_the_id() -> None:
    async def main() -> None:
        server = await relay()
        control, session, _ = await register(server)
        (vr, vw), (ar, aw) = await pair(server, control, session)
        aw.close()  # the agent rejected the password and hung up
        assert await asyncio.wait_for(vr.read(), 5) == b""
        await close_all(vw, aw)
        for _ in range(50):
            if not server._sessions[session].paired:
                break
            await asyncio.sleep(0.01)
        (vr, vw), (ar, aw) = await pair(server, control, session)  # same ID, next attempt
        await close_all(vw, aw, control[1])
        await server.close()

    run(main())


def test_reregistration_with_token_keeps_the_id() -> None:
    async def main() -> None:
        server = await relay()
        control, session, token = await register(server)
        await close_all(control[1])
        await asyncio.sleep(0.05)
        back = await connect(server, {"v": 1, "role": "agent", "session": session, "token": token})
        assert await line(back[0]) == {"status": "registered", "session": session, "token": token}
        (vr, vw), (ar, aw) = await pair(server, back, session)
        await close_all(vw, aw, back[1])
        await server.close()

    run(main())


def test_viewer_arriving_while_the_agent_reconnects_gets_its_ticket_on_reregistration() -> None:
    async def main() -> None:
        server = await relay()
        control, session, token = await register(server)
        await close_all(control[1])
        await asyncio.sleep(0.05)
        viewer = await connect(server, {"v": 1, "role": "viewer", "session": session})
        assert await line(viewer[0]) == {"status": "waiting"}
        back = await connect(server, {"v": 1, "role": "agent", "session": session, "token": token})
        assert (await line(back[0]))["status"] == "registered"
        assert (await line(back[0]))["event"] == "viewer"
        await close_all(viewer[1], back[1])
        await server.close()

    run(main())


def test_a_ticket_sent_to_a_control_connection_that_then_died_is_sent_again_on_reregistration() -> None:
    """The ticket may have gone into a dead connection (a NAT that forgot it, or a cut the relay saw late):
    the agent that comes back must get it, or the waiting viewer hangs until the ticket times out."""
    async def main() -> None:
        server = await relay()
        control, session, token = await register(server)
        viewer, lost = await ask(server, control, session)  # sent, but never answered on this connection
        await close_all(control[1])
        await asyncio.sleep(0.05)
        back = await connect(server, {"v": 1, "role": "agent", "session": session, "token": token})
        assert (await line(back[0]))["status"] == "registered"
        assert await line(back[0]) == {"event": "viewer", "ticket": lost}
        agent = await answer(server, session, lost, viewer)
        await close_all(viewer[1], agent[1], back[1])
        await server.close()

    run(main())


def test_bad_token_is_refused() -> None:
    async def main() -> None:
        server = await relay()
        control, session, token = await register(server)
        await close_all(control[1])
        bad = await connect(server, {"v": 1, "role": "agent", "session": session, "token": token[:-1] + "x"})
        assert await error_then_close(bad[0]) == "bad token"
        await close_all(bad[1])
        await server.close()

    run(main())


def test_id_expires_after_the_reregistration_window() -> None:
    async def main() -> None:
        server = await relay(reregister_window=0.2)
        control, session, token = await register(server)
        await close_all(control[1])
        await asyncio.sleep(0.5)
        late = await connect(server, {"v": 1, "role": "agent", "session": session, "token": token})
        assert await error_then_close(late[0]) == "no such session"
        viewer = await connect(server, {"v": 1, "role": "viewer", "session": session})
        assert await error_then_close(viewer[0]) == "no such session"
        assert server.session_count() == 0
        await close_all(late[1], viewer[1])
        await server.close()

    run(main())


async def _a_viewer_gets_through(server, registration, tickets, next_ticket, check=lambda: None) -> None:
    """A viewer asks for the session; the registration's ticket (``next_ticket``) pairs it; ``check()``;
    then all close."""
    session = registration.session_id
    viewer_task = asyncio.create_task(open_viewer("127.0.0.1", server.port, session, timeout=10))
    ticket = await asyncio.wait_for(next_ticket, 10)
    reader, writer = await open_agent_data("127.0.0.1", server.port, session, ticket)
    vr, vw = await viewer_task
    assert registration.session_id == session
    check()
    await close_all(writer, vw)
    await tickets.aclose()
    await registration.close()
    await server.close()


def test_agent_registration_reregisters_by_itself() -> None:
    async def main() -> None:
        server = await relay()
        registration = await AgentRegistration.register("127.0.0.1", server.port)
        session = registration.session_id
        tickets = registration.tickets()
        server._sessions[session].control.transport.abort()  # the relay side drops the connection
        await _a_viewer_gets_through(server, registration, tickets, tickets.__anext__())

    run(main())


def test_renew_drops_a_silently_dead_control_connection_and_keeps_the_id() -> None:
    """The agent calls renew() when a viewer's channel went silent: the control connection through the
    same NAT is presumed dead, and a new one with the token must carry the next viewer's ticket."""
    async def main() -> None:
        server = await relay()
        registration = await AgentRegistration.register("127.0.0.1", server.port, keepalive_timeout=600)
        session = registration.session_id
        tickets = registration.tickets()
        first = asyncio.ensure_future(tickets.__anext__())
        await asyncio.sleep(0.1)
        old_control = server._sessions[session].control
        registration.renew()
        def replaced() -> None:  # long before the 600 s keepalive timeout
            assert server._sessions[session].control is not old_control

        await _a_viewer_gets_through(server, registration, tickets, first, replaced)

    run(main())


def test_agent_registration_gives_up_when_the_relay_is_gone() -> None:
    async def main() -> None:
        server = await relay()
        registration = await AgentRegistration.register("127.0.0.1", server.port, reregister_window=0.5)
        assert server._server is not None
        server._server.close()  # stop listening: every reconnection attempt is refused
        server._sessions[registration.session_id].control.transport.abort()
        with pytest.raises(RelayError, match="could not re-register within 0.5 s"):
            async for _ in registration.tickets():
                pass
        await registration.close()
        await server.close()

    run(main())


def test_agent_registration_reports_a_relay_shutdown_it_cannot_get_back_from() -> None:
    async def main() -> None:
        server = await relay()
        registration = await AgentRegistration.register("127.0.0.1", server.port, reregister_window=0.5)
        await server.close()
        with pytest.raises(RelayError, match="could not re-register within 0.5 s"):
            async for _ in registration.tickets():
                pass
        await registration.close()

    run(main())


# -- a relay restart: the new relay adopts the IDs and tokens of the agents that come back --------------


def test_an_agent_keeps_its_id_through_a_relay_restart_on_the_same_port() -> None:
    async def main() -> None:
        server = await relay()
        port = server.port
        registration = await AgentRegistration.register("127.0.0.1", port)
        session = registration.session_id
        tickets = registration.tickets()
        next_ticket = asyncio.ensure_future(tickets.__anext__())
        await server.close()                          # the relay goes down (a deploy) ...
        await asyncio.sleep(0.3)
        server = await relay_on(port)                 # ... and comes back knowing nothing
        for _ in range(100):
            if server.session_count():
                break
            await asyncio.sleep(0.05)
        assert server.stats.adopted == 1 and server.session_count() == 1
        viewer_task = asyncio.create_task(open_viewer("127.0.0.1", port, session, timeout=10))
        ticket = await asyncio.wait_for(next_ticket, 10)
        reader, writer = await open_agent_data("127.0.0.1", port, session, ticket)
        vr, vw = await viewer_task
        writer.write(b"same session")
        await writer.drain()
        assert await asyncio.wait_for(vr.readexactly(12), 5) == b"same session"
        assert server.stats.paired == 1
        await close_all(writer, vw)
        await tickets.aclose()
        await registration.close()
        await server.close()

    run(main())


async def relay_on(port: int, **options: Any) -> RelayServer:
    server = RelayServer("127.0.0.1", port, **options)
    await server.start()
    return server


def _stranger_token() -> str:
    return p.new_secret()


def test_a_restarted_relay_adopts_only_free_ids() -> None:
    async def main() -> None:
        server = await relay()
        control, session, token = await register(server)
        # a live ID is never adopted: the stranger's token is checked against the holder's
        stranger = await connect(server, {"v": 1, "role": "agent", "session": session, "token": _stranger_token()})
        assert await error_then_close(stranger[0]) == "bad token"
        # the holder keeps it, and a viewer still reaches the holder
        viewer = await connect(server, {"v": 1, "role": "viewer", "session": session})
        assert await line(viewer[0]) == {"status": "waiting"}
        assert (await line(control[0]))["event"] == "viewer"
        # an ID taken by adoption is live too: a second claim with another token is refused
        free = "987654321" if session != "987654321" else "987654322"
        first = await connect(server, {"v": 1, "role": "agent", "session": free, "token": _stranger_token()})
        assert (await line(first[0]))["status"] == "registered"
        second = await connect(server, {"v": 1, "role": "agent", "session": free, "token": _stranger_token()})
        assert await error_then_close(second[0]) == "bad token"
        assert server.stats.adopted == 1
        await close_all(control[1], stranger[1], viewer[1], first[1], second[1])
        await server.close()

    run(main())


def test_adoption_needs_a_full_strength_token_and_an_open_window() -> None:
    async def main() -> None:
        server = await relay(adopt_window=0.3)
        weak = await connect(server, {"v": 1, "role": "agent", "session": "123456789", "token": "short"})
        assert await error_then_close(weak[0]) == "no such session"
        await asyncio.sleep(0.5)
        late = await connect(server, {"v": 1, "role": "agent", "session": "123456789", "token": _stranger_token()})
        assert await error_then_close(late[0]) == "no such session"
        assert server.stats.adopted == 0 and server.session_count() == 0
        await close_all(weak[1], late[1])
        await server.close()

    run(main())


def test_adoptions_are_rate_limited_per_source() -> None:
    async def main() -> None:
        server = await relay(adopt_per_source=3)
        conns = []
        for i in range(3):
            conn = await connect(server, {"v": 1, "role": "agent", "session": f"11111111{i}",
                                          "token": _stranger_token()})
            assert (await line(conn[0]))["status"] == "registered"
            conns.append(conn)
        over = await connect(server, {"v": 1, "role": "agent", "session": "111111119", "token": _stranger_token()})
        assert await error_then_close(over[0]) == "no such session"
        assert server.stats.adopted == 3
        await close_all(*(c[1] for c in conns), over[1])
        await server.close()

    run(main())


@pytest.mark.parametrize("payload, reason", [
    (b"x" * 2000, "line too long"),
    (b'{"v":1,"role":"agent"' + b" " * 1100 + b"}\n", "line too long"),
    (b"GET / HTTP/1.1\r\n", "malformed hello"),
    (b'{"v":7,"role":"agent"}\n', "unsupported version"),
    (b'{"v":1,"role":"agent-data","session":"123456789","ticket":"nope"}\n', "no such session"),
])
def test_bad_hellos_get_an_error_and_a_close(payload: bytes, reason: str) -> None:
    async def main() -> None:
        server = await relay()
        reader, writer = await connect(server, payload)
        assert await error_then_close(reader) == reason
        await close_all(writer)
        await server.close()

    run(main())


def test_wrong_ticket_is_refused_and_the_viewer_keeps_waiting() -> None:
    async def main() -> None:
        server = await relay()
        control, session, _ = await register(server)
        viewer, ticket = await ask(server, control, session)
        wrong = await connect(server, {"v": 1, "role": "agent-data", "session": session, "ticket": "forged"})
        assert await error_then_close(wrong[0]) == "no such ticket"
        right = await connect(server, {"v": 1, "role": "agent-data", "session": session, "ticket": ticket})
        assert await line(right[0]) == {"status": "paired"}
        await close_all(viewer[1], wrong[1], right[1], control[1])
        await server.close()

    run(main())


def test_hello_timeout() -> None:
    async def main() -> None:
        server = await relay(hello_timeout=0.2)
        reader, writer = await connect(server)
        writer.write(b'{"v":1,')  # starts, never finishes
        assert await error_then_close(reader) == "hello timeout"
        await close_all(writer)
        await server.close()

    run(main())


def test_ticket_timeout() -> None:
    async def main() -> None:
        server = await relay(ticket_timeout=0.2)
        control, session, _ = await register(server)
        viewer = await connect(server, {"v": 1, "role": "viewer", "session": session})
        assert await line(viewer[0]) == {"status": "waiting"}
        assert await error_then_close(viewer[0]) == "agent did not answer"
        with pytest.raises(RelayError, match="did not answer"):
            await open_viewer("127.0.0.1", server.port, session)
        await close_all(viewer[1], control[1])
        await server.close()

    run(main())


def test_keepalives_on_the_control_connection() -> None:
    async def main() -> None:
        server = await relay(keepalive_interval=0.05)
        control, _, _ = await register(server)
        assert await line(control[0]) == {"event": "keepalive"}
        assert await line(control[0]) == {"event": "keepalive"}
        await close_all(control[1])
        await server.close()

    run(main())


def test_idle_paired_connections_are_closed() -> None:
    async def main() -> None:
        server = await relay(idle_timeout=0.3)
        control, session, _ = await register(server)
        (vr, vw), (ar, aw) = await pair(server, control, session)
        vw.write(b"activity")
        await ar.readexactly(8)
        assert await asyncio.wait_for(vr.read(), 5) == b""
        assert await asyncio.wait_for(ar.read(), 5) == b""
        await close_all(vw, aw, control[1])
        await server.close()

    run(main())


def test_connections_per_source_are_capped() -> None:
    async def main() -> None:
        server = await relay(max_per_source=3)
        held = [await connect(server) for _ in range(3)]
        await asyncio.sleep(0.05)
        over = await connect(server)
        assert await error_then_close(over[0]) == "too many connections"
        await close_all(held[0][1])
        await asyncio.sleep(0.05)
        again = await connect(server, {"v": 1, "role": "agent"})
        assert (await line(again[0]))["status"] == "registered"
        await close_all(over[1], again[1], *(w for _, w in held[1:]))
        await server.close()

    run(main())


def test_a_stalled_viewer_holds_at_most_the_high_water_mark() -> None:
    async def main() -> None:
        server = await relay(high_water=128 * 1024)
        control, session, _ = await register(server)
        (vr, vw), (ar, aw) = await pair(server, control, session)
        chunk = b"s" * 65536
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while True:
                aw.write(chunk)
                await aw.drain()
                sent += len(chunk)

        task = asyncio.create_task(flood())
        await asyncio.sleep(0.5)
        assert not task.done()
        assert server.stats.peak_write_buffer <= 128 * 1024 + 64 * 1024
        assert server.buffered_bytes() <= 128 * 1024 + 64 * 1024
        task.cancel()
        await close_all(vw, aw, control[1])
        await server.close()

    run(main())


def test_logs_show_session_ids_truncated(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> str:
        server = await relay()
        control, session, _ = await register(server)
        (vr, vw), (ar, aw) = await pair(server, control, session)
        await close_all(vw, aw, control[1])
        await server.close()
        return session

    with caplog.at_level(logging.INFO, logger="agent.relay"):
        session = run(main())
    text = caplog.text
    assert session[:3] + "…" in text and "paired" in text
    assert session not in text and session[3:] not in text


def _relay_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", "import sys; from agent.commands import relay_main; "
                             "sys.exit(relay_main())", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cli_serves_logs_json_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = _relay_cli("--listen", f"127.0.0.1:{port}", "--json")
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        assert first["event"] == "listening" and first["port"] == port

        async def use() -> None:
            registration = await AgentRegistration.register("127.0.0.1", port)
            await registration.close()

        run(use())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    events = [json.loads(text)["event"] for text in err.splitlines()]
    assert "registered" in events and events[-1] == "stopped"


def test_cli_usage_and_bind_errors() -> None:
    proc = _relay_cli("--listen", "nowhere:99999")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and err.startswith("error: invalid port")
    port = free_port()
    holder = _relay_cli("--listen", f"127.0.0.1:{port}")
    try:
        assert holder.stderr is not None and "listening" in holder.stderr.readline()
        proc = _relay_cli("--listen", f"127.0.0.1:{port}")
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 1 and err.startswith("error: cannot listen on") and len(err.splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=10)
