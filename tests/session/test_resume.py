"""A cut path in one process: the agent goes ``reconnecting`` (input off, held keys released), the bridge resumes
with the channel's secret (no password, no consent), the RFB stream resends a full frame; a resume that never
comes ends the session after ``resume_timeout``."""
from __future__ import annotations

import asyncio

import numpy as np

from agent.errors import SessionEndedError
from agent.rfb import messages as M
from agent.session import lifecycle as lc
from agent.viewer.rfb_client import open_rfb
from tests.session.test_agent import SIZE, _bridge, _expected_idle_frame, _until, chain
from tests.support.pipes import RecordingInput


def _cut(agent) -> None:
    """Drop the agent's TCP path to the relay without a CLOSE (the relay then drops the viewer's)."""
    agent._session.transport._writer.transport.abort()


def _covered(rects, width: int, height: int) -> bool:
    mask = np.zeros((height, width), bool)
    for x, y, w, h, _ in rects:
        mask[y:y + h, x:x + w] = True
    return bool(mask.all())


async def test_a_cut_path_resumes_without_the_password_and_resends_a_full_frame(tmp_path):
    inputs = RecordingInput()
    async with chain(tmp_path, input_backend=inputs) as (agent, relay):
        await agent.consent("control")
        states: list[str] = []
        events: list[dict] = []
        watcher = asyncio.ensure_future(_collect(agent, states))
        bridge = await _bridge(agent, relay)
        bridge._on_event = events.append
        try:
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            await _until(lambda: agent.status()["state"] == "active")
            password_after_use = agent.credentials()["password"]
            await client.key(0x61, True)  # 'a' held down through the chain
            await _until(lambda: ("key", 0x61, True) in inputs.calls)
            rows = len(agent.ledger.rows())

            _cut(agent)
            await _until(lambda: "reconnecting" in states)
            assert ("release_all",) in inputs.calls  # the held key was released on the customer's side
            await _until(lambda: bridge.resumes == 1 and agent.status()["state"] == "active")
            assert any(e.get("event") == "reconnecting" for e in events)
            assert any(e.get("event") == "resumed" for e in events)
            assert bridge.pairings == 2
            # the same session: no new password, no new consent row, the scope kept
            assert agent.credentials()["password"] == password_after_use
            assert len(agent.ledger.rows()) == rows
            assert agent.status()["scope"] == "control"

            # an idle screen: without the forced refresh nothing would come; the bridge's request stands,
            # so the whole screen comes unasked (an incremental request now would be kept by the bridge)
            update = await client.wait_for(M.FramebufferUpdate, timeout=10)
            assert _covered(update.rects, *SIZE)
            assert np.array_equal(client.framebuffer[:, :, :3], _expected_idle_frame())
            # and input flows again
            inputs.calls.clear()
            await client.key(0x62, True)
            await client.key(0x62, False)
            await _until(lambda: ("key", 0x62, False) in inputs.calls)
            await client.close()
        finally:
            watcher.cancel()
            await bridge.close()


async def test_without_a_resume_the_session_ends_after_the_resume_timeout(tmp_path):
    async with chain(tmp_path, resume_timeout=0.5) as (agent, relay):
        await agent.consent("view")
        bridge = await _bridge(agent, relay)
        try:
            client = await open_rfb(*bridge.address, timeout=10)
            await client.update(incremental=False, timeout=10)
            await _until(lambda: agent.status()["state"] == "active")
            bridge.config.resume_timeout = 3
            # the viewer cannot come back until the agent gave up
            real_connect = bridge._connect

            async def never():
                await asyncio.sleep(0.2)
                raise OSError("the technician's network is down")

            bridge._connect = never
            started = asyncio.get_running_loop().time()
            _cut(agent)
            reason, code = await asyncio.wait_for(agent.wait(), 10)
            assert 0.4 < asyncio.get_running_loop().time() - started < 5
            assert "did not come back" in reason and agent.status()["state"] == "ended"
            rows = agent.ledger.rows()
            assert rows[-1]["session_end"] is not None
            bridge._connect = real_connect
            # the bridge, back on the network, gets no session back and ends at its own resume timeout
            await asyncio.wait_for(_wait_ended(bridge), 10)
            assert bridge.resumes == 0
            await client.close()
        finally:
            await bridge.close()


async def _wait_ended(bridge) -> None:
    try:
        await bridge.wait()
    except SessionEndedError:
        return
    raise AssertionError("the bridge should end with SessionEndedError")


async def _collect(agent, states: list[str]) -> None:
    async for event in agent.events():
        if event.get("event") == "state":
            states.append(event["state"])


def test_reconnecting_is_a_state_of_the_machine() -> None:
    assert lc.State.RECONNECTING.value == "reconnecting"
