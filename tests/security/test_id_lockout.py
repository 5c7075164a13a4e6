"""Lockout by knowing the 9-digit ID (issue #11 A), through the real relay.

The attacker knows only the session ID. It opens three viewer connections to it through the relay and
then says nothing. Before the fix the first of them held the session ("session busy" for everyone
else at the relay, "authenticating" for up to 30 s at the agent); now the relay hands the agent a
ticket per viewer, silent ones are dropped at the pre-authentication deadline, and the technician's
handshake runs beside them: with the right password they get in within 10 s.
"""
from __future__ import annotations

import asyncio
import json
import time

from agent.relay.client import open_viewer
from agent.relay.server import RelayServer
from agent.secure.stream import connect_viewer
from agent.session.agent import Agent, AgentConfig
from agent.workloads import SyntheticSource


async def _silent_viewer(port: int, session_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps({"v": 1, "role": "viewer", "session": session_id}).encode() + b"\n")
    await writer.drain()
    return reader, writer  # and never a byte more


async def test_three_silent_viewers_do_not_keep_the_technician_out(tmp_path):
    relay = RelayServer("127.0.0.1", 0)
    await relay.start()
    agent = Agent(AgentConfig(relay=f"127.0.0.1:{relay.port}", source=SyntheticSource("idle", 64, 48),
                              control=False, consent_db=str(tmp_path / "consent.db")))
    await agent.start()
    attackers = []
    try:
        creds = agent.credentials()
        for _ in range(3):
            attackers.append(await _silent_viewer(relay.port, creds["session"]))
        for reader, _ in attackers:  # all three are in: the relay told each to wait
            assert json.loads(await asyncio.wait_for(reader.readline(), 5))["status"] == "waiting"
        await asyncio.sleep(0.5)  # the agent has answered their tickets: the attackers hold their slots

        started = time.monotonic()

        async def technician():
            reader, writer = await open_viewer("127.0.0.1", relay.port, creds["session"], timeout=10)
            return await connect_viewer(reader, writer, creds["session"], creds["password"], timeout=10)

        stream = await asyncio.wait_for(technician(), 10)
        elapsed = time.monotonic() - started
        assert elapsed < 10, elapsed
        for _ in range(100):
            if agent.status()["state"] == "consent_pending":
                break
            await asyncio.sleep(0.01)
        assert agent.status()["state"] == "consent_pending"
        assert agent.status()["failed_attempts"] == 0  # silence is not a guess
        await stream.close("done")
    finally:
        for _, writer in attackers:
            writer.close()
        for _, writer in attackers:
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)
        await agent.close()
        await relay.close()


async def test_a_silent_viewer_is_dropped_at_the_preauthentication_deadline(tmp_path):
    from agent.session.admission import PREAUTH_TIMEOUT

    relay = RelayServer("127.0.0.1", 0)
    await relay.start()
    agent = Agent(AgentConfig(relay=f"127.0.0.1:{relay.port}", source=SyntheticSource("idle", 64, 48),
                              control=False, consent_db=str(tmp_path / "consent.db")))
    await agent.start()
    try:
        reader, writer = await _silent_viewer(relay.port, agent.credentials()["session"])
        started = time.monotonic()
        while await asyncio.wait_for(reader.readline(), PREAUTH_TIMEOUT + 5):
            pass  # waiting, paired, then the agent hangs up
        assert time.monotonic() - started < PREAUTH_TIMEOUT + 2
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    finally:
        await agent.close()
        await relay.close()


async def test_a_sources_share_of_stalled_handshakes_does_not_keep_the_technician_out(tmp_path, monkeypatch):
    """Four viewers (one source's whole share at the relay) send a real PAKE HELLO and then nothing:
    each holds a handshake slot at the agent until the PAKE deadline, and none may fill them all."""
    from agent.relay import connection as relay_connection
    from agent.relay import protocol as p
    from agent.secure.handshake import ViewerHandshake

    attacking = [False]  # while set, the relay sees new connections come from the attacker's network
    real = relay_connection.Connection.connection_made

    def made(self, transport):
        real(self, transport)
        if attacking[0]:
            self.source, self.source_key = "198.51.100.7", p.source_key("198.51.100.7")

    monkeypatch.setattr(relay_connection.Connection, "connection_made", made)

    relay = RelayServer("127.0.0.1", 0)
    await relay.start()
    agent = Agent(AgentConfig(relay=f"127.0.0.1:{relay.port}", source=SyntheticSource("idle", 64, 48),
                              control=False, consent_db=str(tmp_path / "consent.db")))
    await agent.start()
    stalled = []
    try:
        creds = agent.credentials()
        attacking[0] = True
        for n in range(4):
            reader, writer = await open_viewer("127.0.0.1", relay.port, creds["session"], timeout=5)
            writer.write(ViewerHandshake(creds["session"], f"guess{n}").data_to_send())  # HELLO, then silence
            stalled.append(writer)
        attacking[0] = False
        await asyncio.sleep(0.3)

        async def technician():
            reader, writer = await open_viewer("127.0.0.1", relay.port, creds["session"], timeout=10)
            return await connect_viewer(reader, writer, creds["session"], creds["password"], timeout=10)

        stream = await asyncio.wait_for(technician(), 10)
        assert agent.status()["failed_attempts"] == 0
        await stream.close("done")
    finally:
        for writer in stalled:
            writer.close()
        await agent.close()
        await relay.close()
