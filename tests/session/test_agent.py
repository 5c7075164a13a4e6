"""The Agent API in one process: relay, agent on a synthetic screen, viewer bridge, our RFB client."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket

import numpy as np
import pytest

from agent.workloads import SyntheticSource
from agent.consent.ledger import ConsentLedger
from agent.errors import SessionEndedError
from agent.relay.server import RelayServer
from agent.viewer.rfb_client import open_rfb
from agent.secure.errors import WrongPasswordError
from agent.session.agent import Agent, AgentConfig
from agent.viewer.bridge import BridgeConfig, ViewerBridge

SIZE = (320, 200)


@contextlib.asynccontextmanager
async def chain(tmp_path, **agent_options):
    relay = RelayServer(host="127.0.0.1", port=0)
    await relay.start()
    host, port = relay.address
    config = AgentConfig(relay=f"{host}:{port}", source=SyntheticSource("idle", *SIZE),
                         control_path=str(tmp_path / "control.sock"), consent_db=str(tmp_path / "consent.db"),
                         auth_failure_delay=0.0, **agent_options)
    agent = Agent(config)
    await agent.start()
    try:
        yield agent, (host, port)
    finally:
        await agent.close()
        await relay.close()


async def _bridge(agent, relay, password=None) -> ViewerBridge:
    creds = agent.credentials()
    bridge = ViewerBridge(BridgeConfig(session_id=creds["session"], password=password or creds["password"],
                                       relay=relay, listen=("127.0.0.1", 0), timeout=10))
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
        with pytest.raises(SessionEndedError, match="consent_refused"):
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
        events = []

        async def collect():
            async for event in agent.events():
                events.append(event)

        collector = asyncio.create_task(collect())
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
        collector.cancel()


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
    from agent.control.protocol import ControlError

    async with chain(tmp_path) as (agent, relay):
        agent.ledger.close()  # the ledger cannot be written any more
        with pytest.raises(ControlError) as info:
            await agent.consent("view")
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
        seen: list[dict] = []

        async def collect():
            async for event in agent.events():
                seen.append(event)

        collector = asyncio.create_task(collect())
        bridge = await _bridge(agent, relay)
        client = await open_rfb(*bridge.address, timeout=10)
        await client.update(incremental=False, timeout=10)
        await _until(lambda: any(e.get("event") == "link" for e in seen), timeout=10)
        link = [e for e in seen if e["event"] == "link"][-1]
        assert link["bytes_sent"] > 0 and "rtt_ms" in link and "bandwidth_kbit" in link
        collector.cancel()
        await client.close()
        await bridge.close()
