"""The events of the record layer (agent.secure.records), in a module of their own to keep that one short."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from agent.sansio import NeedData


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
