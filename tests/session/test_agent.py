"""The Agent API in one process: relay, agent on a synthetic screen, viewer bridge, our RFB client."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging

import numpy as np
import pytest

from agent.workloads import SyntheticSource
from agent.consent.ledger import ConsentLedger
from agent.errors import RefusedError, SessionEndedError
from agent.relay.server import RelayServer
from agent.viewer.rfb_client import open_rfb
from agent.secure.errors import WrongPasswordError
from agent.session.agent import Agent, AgentConfig
from agent.session.errors import ConsentNotRecorded
from agent.viewer.bridge import BridgeConfig, ViewerBridge
from tests.support.agent_events import agent_events

SIZE = (320, 200)


@contextlib.asynccontextmanager
async def chain(tmp_path, source=None, **agent_options):
    relay = RelayServer(host="127.0.0.1", port=0)
    await relay.start()
    host, port = relay.address
    config = AgentConfig(relay=f"{host}:{port}", source=source or SyntheticSource("idle", *SIZE),
                         control_path=str(tmp_path / "control.sock"), consent_db=str(tmp_path / "consent.db"),
                         auth_failure_delay=0.0, **agent_options)
    agent = Agent(config)
    await agent.start()
    try:
        yield agent, (host, port)
    finally:
        await agent.close()
        await relay.close()


async def _bridge(agent, relay, password=None, **options) -> ViewerBridge:
    creds = agent.credentials()
    bridge = ViewerBridge(BridgeConfig(session_id=creds["session"], password=password or creds["password"],
                                       relay=relay, listen=("127.0.0.1", 0), timeout=10, **options))
    await bridge.start()
    return bridge


async def _until(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def _expected_idle_frame() -> np.ndarray:
    return SyntheticSource("idle", *SIZE).grab()[:, :, :3]


async def test_technician_sees_the_screen_after_consent(tmp_path):
    async with chain(tmp_path) as (agent, relay):
        assert agent.status()["state"] == "waiting"
        await agent.consent("view")
        bridge = await _bridge(agent, relay)
        try:
            assert bridge.safety_code is not None and len(bridge.safety_code) == 4
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            assert np.array_equal(client.framebuffer[:, :, :3], _expected_idle_frame())
            assert agent.status()["state"] == "active"
            assert agent.status()["scope"] == "view"
            assert agent.status()["safety_code"] == bridge.safety_code
            await client.close()
        finally:
            await bridge.close()


async def test_through_the_bridge_the_first_request_stands_and_changes_come_without_more(tmp_path):
    """The agent says it knows standing requests; the bridge then keeps the local viewer's incremental
    requests to itself, and the agent still sends every change (no request reaches it after the first)."""
    from agent.rfb import constants as C
    from agent.rfb import messages as M

    async with chain(tmp_path, source=SyntheticSource("typing", *SIZE, seed=1), fps=20) as (agent, relay):
        await agent.consent("view")
        bridge = await _bridge(agent, relay)
        try:
            await _until(lambda: bridge._standing)
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            [viewer] = agent.service.viewers
            assert C.ENC_STANDING_REQUEST in viewer.updater.server.encodings
            for _ in range(3):
                await client.update(timeout=10)  # each request is kept; the update comes anyway
            assert bridge.requests_kept >= 3
            got = 0
            for _ in range(3):  # and with no request at all
                await client.wait_for(M.FramebufferUpdate, timeout=10)
                got += 1
            assert got == 3
            await client.close()
        finally:
            await bridge.close()


async def test_a_pull_bridge_passes_every_request_on(tmp_path):
    """``rejnet-agent viewer --pull``: for a VNC viewer that ignores updates it did not ask for."""
    from agent.commands import viewer as viewer_command
    from agent.rfb import constants as C

    parser = argparse.ArgumentParser()
    viewer_command.add_arguments(parser)
    assert parser.parse_args(["123456789", "--pull"]).pull and not parser.parse_args(["123456789"]).pull
    async with chain(tmp_path, source=SyntheticSource("typing", *SIZE, seed=1), fps=20) as (agent, relay):
        await agent.consent("view")
        bridge = await _bridge(agent, relay, standing_requests=False)
        try:
            await _until(lambda: bridge._standing)  # the agent knows how; this bridge does not ask
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            for _ in range(3):
                await client.update(timeout=10)
            [viewer] = agent.service.viewers
            assert C.ENC_STANDING_REQUEST not in viewer.updater.server.encodings and bridge.requests_kept == 0
            await client.close()
        finally:
            await bridge.close()


@pytest.mark.parametrize("compress", [True, False])
async def test_the_channel_compresses_unless_told_not_to(tmp_path, compress):
    async with chain(tmp_path, compress=compress) as (agent, relay):
        await agent.consent("view")
        bridge = await _bridge(agent, relay)
        try:
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            assert np.array_equal(client.framebuffer[:, :, :3], _expected_idle_frame())
            assert agent._stream.compressing is compress
            [viewer] = agent.service.viewers
            assert viewer.updater.manager.outer_compression is compress  # Raw under zstd, Tight's zlib without
            await client.close()
        finally:
            await bridge.close()


async def test_no_byte_of_rfb_before_consent(tmp_path):
    async with chain(tmp_path) as (agent, relay):
        bridge = await _bridge(agent, relay)
        try:
            await _until(lambda: agent.status()["state"] == "consent_pending")
            reader, writer = await asyncio.open_connection(*bridge.address)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(1), 1.0)
            await agent.consent("view")
            assert await asyncio.wait_for(reader.readexactly(12), 10) == b"RFB 003.008\n"
            writer.close()
        finally:
            await bridge.close()


async def test_reject_with_confirm_each_ends_viewer_as_refused(tmp_path):
    async with chain(tmp_path, confirm_each=True) as (agent, relay):
        await agent.consent("view")
        bridge = await _bridge(agent, relay)
        await _until(lambda: agent.status()["awaiting"] == ["accept"])
        await agent.reject()
        with pytest.raises(SessionEndedError, match="refused the connection"):
            await asyncio.wait_for(bridge.wait(), 10)
        await bridge.close()
        await _until(lambda: agent.status()["state"] == "waiting")


async def test_confirm_timeout_never_accepts(tmp_path):
    async with chain(tmp_path, confirm_each=True, confirm_timeout=0.3) as (agent, relay):
        await agent.consent("view")
        bridge = await _bridge(agent, relay)
        with pytest.raises(SessionEndedError):
            await asyncio.wait_for(bridge.wait(), 10)
        await bridge.close()
        assert agent.status()["state"] == "waiting"


async def test_wrong_password_keeps_agent_up_and_rotates_after_three(tmp_path):
    async with chain(tmp_path) as (agent, relay):
        async with agent_events(agent) as events:
            first = agent.credentials()["password"]
            for _ in range(3):
                with pytest.raises(WrongPasswordError):
                    await _bridge(agent, relay, password="wrong1")
                await _until(lambda: agent.status()["state"] == "waiting")
            second = agent.credentials()["password"]
            assert second != first
            assert any(e.get("event") == "password_rotated" for e in events)
            await agent.consent("view")
            bridge = await _bridge(agent, relay)  # the new password works
            await bridge.close()


async def test_terminate_wipes_the_session_and_records_the_end(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with chain(tmp_path) as (agent, relay):
        creds = agent.credentials()
        await agent.consent("control")
        bridge = await _bridge(agent, relay)
        client = await open_rfb(*bridge.address, timeout=10)
        await client.update(incremental=False, timeout=10)
        await agent.terminate("customer is done")
        with pytest.raises(SessionEndedError, match="customer is done"):
            await asyncio.wait_for(bridge.wait(), 5)
        assert await agent.wait() == ("customer is done", 0)
        assert agent.machine.session_id is None and agent.machine.peer is None
        assert agent.machine.password is None
        status = json.dumps(agent.status())
        await client.close()
        await bridge.close()
    assert creds["password"] not in status
    assert creds["password"] not in caplog.text
    with ConsentLedger(tmp_path / "consent.db") as ledger:
        assert ledger.verify().ok
        rows = ledger.rows()
    kinds = [row["kind"] for row in rows]
    assert kinds.count("consent") == 1 and kinds.count("end") == 1
    assert creds["session"] not in json.dumps(rows)


async def test_ledger_failure_means_no_consent_and_no_stream(tmp_path):
    async with chain(tmp_path) as (agent, relay):
        agent.ledger.close()  # the ledger cannot be written any more
        with pytest.raises(ConsentNotRecorded) as info:  # the session's own error, a RefusedError
            await agent.consent("view")
        assert isinstance(info.value, RefusedError)
        assert info.value.code == "ledger"
        assert agent.status()["consent"] is None


async def test_direct_mode(tmp_path):
    config = AgentConfig(listen="127.0.0.1:0", source=SyntheticSource("idle", *SIZE), control=False,
                         consent_db=str(tmp_path / "consent.db"))
    agent = Agent(config)
    await agent.start()
    try:
        await agent.consent("view")
        creds = agent.credentials()
        bridge = ViewerBridge(BridgeConfig(session_id=creds["session"], password=creds["password"],
                                           direct=agent.listen_address, listen=("127.0.0.1", 0)))
        await bridge.start()
        client = await open_rfb(*bridge.address, timeout=10)
        await client.update(incremental=False, timeout=10)
        assert np.array_equal(client.framebuffer[:, :, :3], _expected_idle_frame())
        await client.close()
        await bridge.close()
    finally:
        await agent.close()


def test_bridge_refuses_non_loopback():
    from agent.errors import UsageError

    with pytest.raises(UsageError):
        BridgeConfig(session_id="123456789", password="x", relay=("127.0.0.1", 1), listen=("0.0.0.0", 5901))


async def test_subscribers_get_link_statistics(tmp_path):
    async with chain(tmp_path) as (agent, relay):
        await agent.consent("view")
        async with agent_events(agent) as seen:
            bridge = await _bridge(agent, relay)
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            await _until(lambda: any(e.get("event") == "link" for e in seen), timeout=10)
        link = [e for e in seen if e["event"] == "link"][-1]
        assert link["bytes_sent"] > 0 and "rtt_ms" in link and "bandwidth_kbit" in link
        await client.close()
        await bridge.close()


async def test_acks_drive_the_services_link_quality_with_no_polling_task(tmp_path):
    async with chain(tmp_path) as (agent, relay):
        await agent.consent("view")
        calls: list[tuple[str, object]] = []
        service = agent.service
        real_set, real_kick = service.set_link_quality, service.kick_all

        def set_link_quality(cap):
            calls.append(("set_link_quality", cap))
            real_set(cap)

        def kick_all():
            calls.append(("kick_all", None))
            real_kick()

        service.set_link_quality, service.kick_all = set_link_quality, kick_all
        bridge = await _bridge(agent, relay)
        try:
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            assert calls[0] == ("set_link_quality", None)  # a new viewer starts at its own quality choice
            stream = agent._stream
            await _until(lambda: stream.in_flight == 0)  # the viewer acknowledged the frame
            assert len(calls) > 1  # ... and each ACK reached the service through the narrow interface
            assert agent.flow is not None and agent.flow._acked == stream.bytes_sent
            # the session runs the RFB connection and nothing else: no task polls the stream
            assert agent._tasks == {agent._stream_task}
            assert not [t for t in asyncio.all_tasks() if "watch" in t.get_coro().__qualname__]
            await client.close()
        finally:
            await bridge.close()


async def test_a_viewer_leaving_before_consent_is_noticed_from_the_end_of_its_stream(tmp_path):
    async with chain(tmp_path, keep_waiting=True) as (agent, relay):
        async with agent_events(agent) as seen:
            bridge = await _bridge(agent, relay)
            await _until(lambda: agent.status()["state"] == "consent_pending")
            assert agent._stream_task is None  # no RFB runs that could notice it
            await bridge.close("technician changed their mind")
            await _until(lambda: agent.status()["state"] == "waiting")
            await _until(lambda: any(e.get("event") == "viewer_left" for e in seen))
        [left] = [e for e in seen if e.get("event") == "viewer_left"]
        assert left["reason"] == "technician changed their mind"
        assert agent._stream is None


async def test_refusals_reach_the_control_socket_with_the_same_codes_and_messages(tmp_path):
    from agent.consent.terms import CURRENT_VERSION
    from agent.control.client import AsyncControlClient

    async with chain(tmp_path) as (agent, relay):
        client = await AsyncControlClient.open(str(tmp_path / "control.sock"))
        try:
            async def error(cmd, **args):
                reply = await client.request(cmd, check=False, **args)
                assert reply["ok"] is False, reply
                return reply["error"]

            assert await error("accept") == {"code": "not_allowed", "message": "Accepted is not allowed in state 'waiting'"}
            assert await error("set_scope", scope="control") == {
                "code": "not_allowed", "message": "ScopeChanged is not allowed in state 'waiting': no consent is recorded yet"}
            assert await error("consent", scope="view", terms_version=CURRENT_VERSION, terms_sha256="0" * 64) == {
                "code": "terms_mismatch",
                "message": f"the terms shown are not the terms this agent ships (version {CURRENT_VERSION}); "
                           "show the packaged text"}
            agent.ledger.close()
            failed = await error("consent", scope="view", terms_version=CURRENT_VERSION,
                                 terms_sha256=load_terms_digest(CURRENT_VERSION))
            assert failed["code"] == "ledger"
            assert failed["message"].startswith("consent not recorded, nothing is shared: ")
            await agent.terminate("done")
            assert await error("credentials") == {
                "code": "no_session", "message": "no credentials in state 'ended': the session has ended"}
            assert await error("consent", scope="view", terms_version=CURRENT_VERSION,
                               terms_sha256=load_terms_digest(CURRENT_VERSION)) == {
                "code": "ended", "message": "the session has ended"}
        finally:
            await client.close()


def load_terms_digest(version: str) -> str:
    from agent.consent.terms import load_terms

    return load_terms(version).sha256


def test_the_session_speaks_to_the_service_and_the_control_socket_only_through_narrow_interfaces():
    import ast
    from pathlib import Path

    import agent.session

    for path in Path(agent.session.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "agent.control.protocol" not in imported, path.name  # refusals are RefusedErrors
        attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not attributes & {"updater", "manager"}, path.name  # the service's internals


async def test_consent_reply_and_state_events_say_what_was_recorded_and_when(tmp_path):
    import time
    from datetime import datetime

    from agent.consent.terms import CURRENT_VERSION
    from agent.control.client import AsyncControlClient

    async with chain(tmp_path) as (agent, relay):
        client = await AsyncControlClient.open(str(tmp_path / "control.sock"))
        try:
            async with agent_events(agent) as seen:
                before = time.time()
                reply = await client.request("consent", scope="control", terms_version=CURRENT_VERSION,
                                             terms_sha256=load_terms_digest(CURRENT_VERSION))
                assert reply["recorded"] is True and reply["scope"] == "control"
                at = datetime.fromisoformat(reply["recorded_at"].replace("Z", "+00:00")).timestamp()
                assert int(before) <= at <= time.time()  # the ledger row's own time, to the second
                [row] = [r for r in agent.ledger.rows() if r["kind"] == "consent"]
                assert row["id"] == reply["consent_row"] and int(row["at"]) == int(at)
                await _until(lambda: any(e.get("event") == "state" and e.get("consent") == "control"
                                         for e in seen))
        finally:
            await client.close()


def test_the_link_counter_says_what_the_link_state_says():
    """``_link_sent`` (read around every flush) is ``_link_state().sent``, None where that is None."""
    from types import SimpleNamespace

    from agent.session.flow import FlowController

    def agent_on(channel):
        return SimpleNamespace(_channel=channel)

    flow = FlowController()
    channel = SimpleNamespace(flow=flow, stream=SimpleNamespace(in_flight=10, bytes_sent=1234))
    for a in (agent_on(None), agent_on(channel)):  # no channel; no estimate yet
        assert Agent._link_state(a) is None and Agent._link_sent(a) is None
    flow.on_ack(0, 0.0)
    flow.on_ack(50_000, 1.0)  # one rate sample: an estimate
    state = Agent._link_state(agent_on(channel))
    assert state is not None and state.sent == Agent._link_sent(agent_on(channel)) == 1234
