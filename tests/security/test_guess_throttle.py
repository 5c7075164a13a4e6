"""Guessing bounded per session over time (issue #11 A).

A stranger who knows the ID guesses as fast as the agent answers. Before the fix every third wrong guess
rotated the password, so the stranger made the password the customer is reading out go stale every few
seconds, and guessed without any bound in time (a fresh value every 3 guesses). Now the wrong guesses of
the whole session (across values) drive a growing back-off, at most one rotation per ROTATION_INTERVAL
is caused by them, a guess asked for while throttled is closed before the PAKE (uncounted), and the
launcher is told; the technician still gets in once the back-off has run out.
"""
from __future__ import annotations

import asyncio

import pytest

from agent.secure.errors import ChannelError, WrongPasswordError
from agent.secure.stream import connect_viewer
from agent.session.agent import Agent, AgentConfig
from agent.session.password import PasswordPolicy
from agent.workloads import SyntheticSource
from tests.support.agent_events import agent_events


async def _guess(address, session_id: str, password: str) -> str:
    reader, writer = await asyncio.open_connection(*address)
    try:
        stream = await connect_viewer(reader, writer, session_id, password, timeout=10)
    except WrongPasswordError:
        return "wrong"
    except (ChannelError, ConnectionError, asyncio.IncompleteReadError):
        return "refused"
    await stream.close("done")
    return "in"


async def test_a_fast_stranger_is_throttled_and_rotates_the_password_once(tmp_path):
    agent = Agent(AgentConfig(listen="127.0.0.1:0", source=SyntheticSource("idle", 64, 48), control=False,
                              consent_db=str(tmp_path / "consent.db"), auth_failure_delay=0.01))
    await agent.start()
    try:
        async with agent_events(agent) as events:
            session_id = agent.credentials()["session"]
            outcomes = []
            for n in range(12):  # a stranger, as fast as the agent answers
                outcomes.append(await _guess(agent.listen_address, session_id, f"guess{n}"))
                await asyncio.sleep(0.02)
            rotations = [e for e in events if e.get("event") == "password_rotated"]
            assert len(rotations) == 1, outcomes  # before: one rotation per three guesses, four of them
            assert outcomes.count("wrong") == 4, outcomes  # three free, the fourth starts the back-off
            assert "refused" in outcomes
            told = [e for e in events if e.get("event") == "guessing_throttled"]
            assert told and told[0]["retry_after"] > 0 and told[0]["reason"] == "backoff", events
            # the technician, once the back-off ran out, gets in with what the customer reads out
            await asyncio.sleep(told[-1]["retry_after"] + 0.1)
            assert await _guess(agent.listen_address, session_id, agent.credentials()["password"]) == "in"
    finally:
        await agent.close()


@pytest.mark.parametrize("spacing", [5.0, 40.0])
def test_wrong_guesses_rotate_at_most_once_per_interval_whatever_their_pace(spacing):
    from agent.session.password import BACKOFF_MAX, ROTATION_INTERVAL

    now = [0.0]
    policy = PasswordPolicy(clock=lambda: now[0])
    rotated_at = []
    for _ in range(200):  # a stranger who always waits out what it is told, then guesses again
        wait, _why = policy.retry_after()
        now[0] += max(wait, spacing if policy.total_failures else 0.0)
        assert policy.retry_after()[0] == 0.0
        if policy.record_failure():
            rotated_at.append(now[0])
    gaps = [b - a for a, b in zip(rotated_at, rotated_at[1:])]
    assert gaps and min(gaps) >= ROTATION_INTERVAL
    assert now[0] >= 199 * min(BACKOFF_MAX, max(spacing, 2.0)) * 0.9  # guessing is bounded in time
