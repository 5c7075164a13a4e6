"""The events of the record layer (agent.secure.records) and the ACK field's wire form, in a module of their
own to keep that one short."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from agent.sansio import NeedData
from agent.secure.errors import ProtocolViolationError
from agent.secure.varint import decode as _read_varint
from agent.secure.varint import encode as _varint

ACK_DELAY_UNIT = 1e-4  # seconds: an ACK's delay field counts tenths of a millisecond
MAX_ACK_TOTAL = 9  # varint bytes: 63 bits of DATA bytes
MAX_ACK_DELAY = 3  # varint bytes: up to 2^21 - 1 units (209 s), saturated
MAX_ACK_PREFIX = MAX_ACK_TOTAL + MAX_ACK_DELAY


def ack_field(total: int, delay: int, wide: bool = False) -> bytes:
    """``total:varint | delay:varint``; ``wide``: each at its full width (MAX_ACK_PREFIX bytes in all)."""
    return _varint(total, MAX_ACK_TOTAL if wide else 0) + _varint(delay, MAX_ACK_DELAY if wide else 0)


def read_ack_field(payload: bytes, trailing: bool) -> tuple[int, int, int]:
    """(total, delay, where the field ends) at the start of ``payload``; ProtocolViolationError if it is
    malformed, or (``trailing`` False) not all of ``payload``."""
    total_end = _read_varint(payload, 0, MAX_ACK_TOTAL, "an ACK total")
    delay_end = None if total_end is None else _read_varint(payload, total_end[1], MAX_ACK_DELAY, "an ACK delay")
    if total_end is None or delay_end is None or (not trailing and delay_end[1] != len(payload)):
        raise ProtocolViolationError("the peer sent an ACK of the wrong size")
    return total_end[0], delay_end[0], delay_end[1]


@dataclass(slots=True)
class Data:
    """Inner (RFB) bytes from the peer, authentic and in order."""

    data: bytes


@dataclass(slots=True)
class Ack:
    """The peer has received ``total`` bytes of our DATA so far.

    ``rtt``: seconds from our send of the DATA that ended at ``total`` to this ACK, less the delay
    the peer reported; None when ``total`` is not the end of one of our latest sends."""

    total: int
    rtt: float | None = None


@dataclass(slots=True)
class Ping:
    """The peer asks for ``send_pong(payload)`` to measure the round trip."""

    payload: bytes


@dataclass(slots=True)
class Pong:
    """Answer to one of our pings; ``rtt`` in seconds, None if it matches no ping still remembered."""

    rtt: float | None


@dataclass(slots=True)
class Closed:
    """The peer ended the channel on purpose (authenticated); it sends nothing more."""

    reason: str


Event = Union[Data, Ack, Ping, Pong, Closed, NeedData]
