"""What the two RFB state machines share: the roles, the shape of a transition table, the lookup.

The machines themselves live in agent.rfb.server and agent.rfb.client; each of
those files owns its state machine, as h11's ``_state.py`` does. A table maps
``(role, state, event)`` to the next state. ``role`` is the side whose event
it is (the peer's, read from the wire, or ours: what our owner asked us to
send, or a decision the protocol leaves to us). ``event`` is an event type
from agent.rfb.messages, or ``(event type, value)`` when the value decides
where the conversation goes (h11 keys ``(Response, _SWITCH_CONNECT)`` the same
way): the security type in force, the version both ends agreed on.

A key missing from the table is an illegal transition, raised as a protocol
error that names the role, the state and the event: LocalProtocolError when
the event was ours (our owner called a method in the wrong state), or
RemoteProtocolError when it was the peer's.
"""
from __future__ import annotations

import enum
from typing import Mapping, Optional, Tuple, TypeVar, Union

from agent.sansio import LocalProtocolError, RemoteProtocolError


class KeyEnum(enum.Enum):
    """An Enum hashed by identity (its members are singletons): the tables below are keyed on roles and
    states for every message, and Enum's own ``__hash__`` is a Python call (it hashes the name)."""

    __hash__ = object.__hash__


class Role(KeyEnum):
    CLIENT = "client"
    SERVER = "server"


EventKey = Union[type, Tuple[type, object]]
State = TypeVar("State", bound=enum.Enum)


def event_name(event: EventKey) -> str:
    """``SecurityType 2``, ``ProtocolVersion 3.3``, ``KeyEvent``."""
    if isinstance(event, tuple):
        kind, value = event
        shown = ".".join(map(str, value)) if isinstance(value, tuple) else str(value)
        return f"{kind.__name__} {shown}"
    return event.__name__


def next_state(table: Mapping[Tuple[Role, State, EventKey], State], us: Role, role: Role, state: State,
               event: EventKey, action: Optional[str] = None) -> State:
    """The state after ``role``'s ``event`` in ``state``; a miss is the error described above.

    ``action`` names the method our owner called, for the error it gets: "server cannot send_update in
    state await-version".
    """
    target = table.get((role, state, event))
    if target is not None:
        return target
    what = action if action is not None and role is us else f"send {event_name(event)}"
    text = f"{role.value} cannot {what} in state {state.value}"
    raise LocalProtocolError(text) if role is us else RemoteProtocolError(text)
