"""The record layer over a fake link: a keyed pair of channels, draining events, splitting a byte stream into records."""
from __future__ import annotations

from agent.sansio import NEED_DATA
from agent.secure import varint
from agent.secure.keyschedule import derive_session_keys
from agent.secure.records import Channel, Closed, Role

KEYS = derive_session_keys(b"s" * 32, b"x" * 32, b"t" * 32)


def pair(**kwargs) -> tuple[Channel, Channel]:
    return Channel(Role.VIEWER, KEYS, **kwargs), Channel(Role.AGENT, KEYS, **kwargs)


def drain(channel: Channel) -> list[object]:
    """All events up to NEED_DATA (or a Closed, which repeats forever)."""
    events: list[object] = []
    while True:
        event = channel.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, Closed):
            return events


def record_header(wire: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(ciphertext+tag length, record type, header size) of the record at ``pos``."""
    value, body = varint.decode(wire, pos, 3, "a record header")
    return value >> 4, value & 15, body - pos


def records(wire: bytes) -> list[bytes]:
    """Split a byte stream into its records (by their length fields)."""
    out, pos = [], 0
    while pos < len(wire):
        length, _, header = record_header(wire, pos)
        out.append(wire[pos:pos + header + length])
        pos += header + length
    return out
