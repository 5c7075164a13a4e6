"""The relay under a stranger's load (issue #11 B): registrations and unknown-ID look-ups per source,
and a cap on the sessions it holds.

Before the fix one address could register as many sessions as it could open connections (each dropped
registration keeping its ID for 60 s), and probe the 9e8 IDs as fast as it liked, the answer "waiting"
vs "no such session" telling it which IDs are live.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time

from agent.relay import connection as relay_connection
from agent.relay import protocol as p
from agent.relay import server as relay_server
from agent.relay.server import RelayServer

# by name, so that these tests run (and fail on behaviour) against a relay without the limits
REGISTER_BURST = getattr(relay_server, "REGISTER_BURST", 20)
REGISTER_RATE = getattr(relay_server, "REGISTER_RATE", 0.5)
LOOKUP_BURST = getattr(relay_server, "LOOKUP_BURST", 10)
RATE_LIMITED = getattr(p, "RATE_LIMITED", "rate limited")
RELAY_FULL = getattr(p, "RELAY_FULL", "relay full")


async def _ask(port: int, hello: dict) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(json.dumps(hello).encode() + b"\n")
        raw = await asyncio.wait_for(reader.readline(), 5)
        return json.loads(raw)
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def test_one_address_cannot_register_thousands_of_sessions_in_a_second():
    relay = RelayServer("127.0.0.1", 0)
    await relay.start()
    try:
        started = time.monotonic()
        replies = []
        while time.monotonic() - started < 1.0 and len(replies) < 3000:
            replies.append(await _ask(relay.port, {"v": 1, "role": "agent"}))  # register, then drop it
        elapsed = time.monotonic() - started
        registered = sum(r.get("status") == "registered" for r in replies)
        limited = [r for r in replies if r.get("status") == "error"]
        assert len(replies) > 200, len(replies)  # the attacker did try many
        assert registered <= REGISTER_BURST + REGISTER_RATE * elapsed + 1, registered
        assert limited and all(r["reason"] == RATE_LIMITED for r in limited)
        assert relay.session_count() == registered  # the dropped ones still hold their IDs, and count
    finally:
        await relay.close()


async def test_two_addresses_in_the_same_64_share_one_budget(monkeypatch):
    # Loopback has one IPv6 address, so the relay is told each connection comes from the next address
    # in turn (what its transport would report); the /64 grouping is the relay's own code.
    addresses = itertools.cycle(["2001:db8:1:2::a", "2001:db8:1:2:ffff:ffff:ffff:fffe"])
    real = relay_connection.Connection.connection_made

    def made(self, transport):
        real(self, transport)
        self.source = next(addresses)
        self.source_key = p.source_key(self.source) if hasattr(p, "source_key") else self.source

    monkeypatch.setattr(relay_connection.Connection, "connection_made", made)
    relay = RelayServer("127.0.0.1", 0)
    await relay.start()
    try:
        replies = [await _ask(relay.port, {"v": 1, "role": "agent"}) for _ in range(2 * REGISTER_BURST)]
        registered = sum(r.get("status") == "registered" for r in replies)
        assert registered <= REGISTER_BURST + 2, registered  # not a budget per address
        assert registered  # (the relay answered)
        assert p.source_key("2001:db8:1:2::a") == p.source_key("2001:db8:1:2:ffff:ffff:ffff:fffe")
        assert p.source_key("2001:db8:1:3::a") != p.source_key("2001:db8:1:2::a")
        assert p.source_key("::ffff:192.0.2.7") == p.source_key("192.0.2.7") == "192.0.2.7"
    finally:
        await relay.close()


async def test_unknown_id_probing_is_throttled_and_answers_alike_past_the_limit():
    relay = RelayServer("127.0.0.1", 0)
    await relay.start()
    try:
        live = await _register_and_keep(relay.port)
        answers = []
        for n in range(200):
            probe = str(100_000_000 + n) if str(100_000_000 + n) != live[0] else "999999999"
            answers.append(await _ask(relay.port, {"v": 1, "role": "viewer", "session": probe}))
        misses = sum(a.get("reason") == p.NO_SUCH_SESSION for a in answers)
        assert misses <= LOOKUP_BURST + 1, misses
        assert sum(a.get("reason") == RATE_LIMITED for a in answers) >= 200 - LOOKUP_BURST - 1
        # past the limit the live ID gets the same answer as a dead one: no oracle
        assert await _ask(relay.port, {"v": 1, "role": "viewer", "session": live[0]}) == \
            {"status": "error", "reason": RATE_LIMITED}
        live[1].close()
    finally:
        await relay.close()


async def test_the_relay_holds_a_bounded_number_of_sessions_dropped_ones_included():
    relay = RelayServer("127.0.0.1", 0, max_sessions=5)
    await relay.start()
    try:
        for _ in range(5):
            assert (await _ask(relay.port, {"v": 1, "role": "agent"}))["status"] == "registered"  # then dropped
        assert await _ask(relay.port, {"v": 1, "role": "agent"}) == {"status": "error", "reason": RELAY_FULL}
        assert relay.session_count() == 5
    finally:
        await relay.close()


async def _register_and_keep(port: int) -> tuple[str, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b'{"v":1,"role":"agent"}\n')
    reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
    return reply["session"], writer
