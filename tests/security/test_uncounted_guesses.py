"""Guessing the password and resetting the connection during the failure delay (issue #11, item 3).

In direct mode the attacker reaches the agent's port itself. It runs our own sans-IO viewer handshake
with a guess, sends its confirmation, and resets the connection (SO_LINGER 0) before the agent's
failure delay is over. It has learnt the answer (a wrong guess is never followed by the agent's
CONFIRM), so each such attempt is one guess and must be counted as one: three of them rotate the
password exactly as three polite wrong guesses do.
"""
from __future__ import annotations

import asyncio
import socket
import struct

from agent.secure.handshake import ViewerHandshake
from agent.session.agent import Agent, AgentConfig
from agent.workloads import SyntheticSource
from tests.support.agent_events import agent_events

FAILURE_DELAY = 1.0  # the agent's default pause before it answers a wrong password


async def _guess_and_reset(address, session_id: str, guess: str) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, address)
    handshake = ViewerHandshake(session_id, guess)
    await loop.sock_sendall(sock, handshake.data_to_send())  # HELLO
    while not (confirm := handshake.data_to_send()):
        handshake.receive_data(await loop.sock_recv(sock, 4096))  # the agent's HELLO
        handshake.next_event()
    await loop.sock_sendall(sock, confirm)  # our guess's proof: the agent now knows it is wrong
    await asyncio.sleep(FAILURE_DELAY / 4)  # inside the agent's failure delay
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST: the agent's FAILED write will fail


async def test_three_guesses_reset_during_the_failure_delay_rotate_the_password(tmp_path):
    config = AgentConfig(listen="127.0.0.1:0", source=SyntheticSource("idle", 64, 48), control=False,
                         consent_db=str(tmp_path / "consent.db"), auth_failure_delay=FAILURE_DELAY)
    agent = Agent(config)
    await agent.start()
    try:
        async with agent_events(agent) as events:
            first = agent.credentials()
            for n in range(3):
                await _guess_and_reset(agent.listen_address, first["session"], "wrong" + str(n))
                for _ in range(200):  # the agent is back to waiting before the next guess can start
                    if agent.status()["state"] == "waiting" and agent._link is not None:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(FAILURE_DELAY)  # let this attempt's delay run out, as a patient attacker would
            assert agent.credentials()["password"] != first["password"], "three guesses went uncounted"
            rotations = [e for e in events if e.get("event") == "password_rotated"]
            assert rotations and rotations[-1]["reason"] == "failures", events
            assert sum(e.get("event") == "auth_failed" for e in events) == 3, events
    finally:
        await agent.close()
