"""The state tables of RFBServer and RFBClient: what they refuse, the readers they pick, and that the
connections follow them.

Every (role, state, event) the tables leave out is an illegal transition: a
LocalProtocolError when the event is ours, a RemoteProtocolError when it is the
peer's, naming the role, the state and the event. Every reader in the tables
runs three ways (h11 tests/test_io.py): the whole message, every proper prefix
(one byte at a time: must ask for more), and followed by trailing bytes (which
it must leave untouched).
"""
from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from agent.rfb import client as client_machine
from agent.rfb import client_messages as CM
from agent.rfb import constants as C
from agent.rfb import handshake as H
from agent.rfb import messages as M
from agent.rfb import server as server_machine
from agent.rfb import server_messages as SM
from agent.rfb import vncauth
from agent.rfb.client import ClientState, RFBClient
from agent.rfb.pixelformat import NATIVE
from agent.rfb.server import RFBServer, ServerState
from agent.rfb.transitions import Role, event_name
from agent.rfb.wire import write_fence
from agent.sansio import NEED_DATA, LocalProtocolError, ProtocolError, RemoteProtocolError
from tests.support.rfb_links import connected_pair, drain_events

MACHINES = {  # name: (module, its states, our role)
    "server": (server_machine, ServerState, Role.SERVER),
    "client": (client_machine, ClientState, Role.CLIENT),
}


def complement(name: str) -> list:
    module, states, _ = MACHINES[name]
    events = sorted({key[2] for key in module.TRANSITIONS}, key=event_name)
    return [pytest.param(name, role, state, event, id=f"{name}-{role.value}-{state.value}-{event_name(event)}")
            for role in Role for state in states for event in events
            if (role, state, event) not in module.TRANSITIONS]


# ---------------------------------------------------------------- the tables themselves

@pytest.mark.parametrize("name,role,state,event", complement("server") + complement("client"))
def test_every_transition_not_in_the_table_is_refused_naming_role_state_and_event(name, role, state, event):
    module, _, us = MACHINES[name]
    expected = LocalProtocolError if role is us else RemoteProtocolError
    with pytest.raises(ProtocolError) as caught:
        module.transition(role, state, event)
    assert type(caught.value) is expected
    assert str(caught.value) == f"{role.value} cannot send {event_name(event)} in state {state.value}"


@pytest.mark.parametrize("name", MACHINES)
def test_tables_cover_every_live_state_and_end_in_closed(name):
    module, states, _ = MACHINES[name]
    live = [s for s in states if s.name not in ("CLOSED", "ERROR")]
    assert set(module.READERS) == set(live) == set(module._HANDLERS)
    sources = {state for _, state, _ in module.TRANSITIONS}
    targets = set(module.TRANSITIONS.values())
    assert sources == set(live)  # nothing leaves CLOSED or ERROR
    assert states.ERROR not in targets  # ERROR is where any protocol error lands, never a transition
    assert targets | {states.AWAIT_VERSION} == set(live) | {states.CLOSED}  # every state is reachable
    assert all(module.TRANSITIONS[(peer, state, M.ConnectionClosed)] is states.CLOSED
               for peer in Role if peer is not MACHINES[name][2] for state in live)


def test_event_names():
    assert event_name(M.KeyEvent) == "KeyEvent"
    assert event_name((M.SecurityType, C.SEC_VNC_AUTH)) == "SecurityType 2"
    assert event_name((M.ProtocolVersion, (3, 3))) == "ProtocolVersion 3.3"


# ---------------------------------------------------------------- our misuse, through the real methods

def server_in(state: ServerState) -> RFBServer:
    vnc = state is ServerState.AWAIT_VNC_RESPONSE
    server = RFBServer(64, 48, security="vnc", password="pw") if vnc else RFBServer(64, 48)
    script = {ServerState.AWAIT_VERSION: b"", ServerState.AWAIT_SECURITY: b"RFB 003.008\n",
              ServerState.AWAIT_VNC_RESPONSE: b"RFB 003.008\n\x02",
              ServerState.AWAIT_CLIENT_INIT: b"RFB 003.008\n\x01", ServerState.NORMAL: b"RFB 003.008\n\x01\x01",
              ServerState.CLOSED: b"RFB 003.008\n\x01\x01", ServerState.ERROR: b"RFB 003.008\n\x07"}[state]
    try:
        for data in ([script] if script else []) + ([b""] if state is ServerState.CLOSED else []):
            server.receive_data(data)
            drain_events(server)
    except RemoteProtocolError:
        pass
    assert server.state is state
    return server


SERVER_CALLS = {
    "send_update": lambda s: s.send_update([]),
    "send_bell": lambda s: s.send_bell(),
    "send_server_cut_text": lambda s: s.send_server_cut_text("x"),
    "send_fence": lambda s: s.send_fence(0),
    "send_end_of_continuous_updates": lambda s: s.send_end_of_continuous_updates(),
}


@pytest.mark.parametrize("action", SERVER_CALLS)
@pytest.mark.parametrize("state", list(ServerState), ids=lambda s: s.value)
def test_server_methods_follow_the_table(state, action):
    assert set(SERVER_CALLS) == set(server_machine.SENDS)
    server = server_in(state)
    if state is ServerState.NORMAL:
        server.receive_data(CM.write_set_encodings([C.ENC_FENCE]))
        drain_events(server)
        SERVER_CALLS[action](server)
        assert server.data_to_send() and server.state is ServerState.NORMAL
        return
    with pytest.raises(LocalProtocolError) as caught:
        SERVER_CALLS[action](server)
    assert str(caught.value) == f"server cannot {action} in state {state.value}"
    assert server.state is state  # our own mistake does not break the connection


def client_in(state: ClientState) -> RFBClient:
    client = RFBClient(password="pw" if state is ClientState.AWAIT_CHALLENGE else None, encodings=[C.ENC_RAW])
    init = H.write_server_init(64, 48, NATIVE, "x")
    script = {ClientState.AWAIT_VERSION: b"", ClientState.AWAIT_SECURITY_TYPES: b"RFB 003.008\n",
              ClientState.AWAIT_SECURITY_33: b"RFB 003.003\n", ClientState.AWAIT_CHALLENGE: b"RFB 003.008\n\x01\x02",
              ClientState.AWAIT_SECURITY_RESULT: b"RFB 003.008\n\x01\x01",
              ClientState.AWAIT_SERVER_INIT: b"RFB 003.008\n\x01\x01\x00\x00\x00\x00",
              ClientState.NORMAL: b"RFB 003.008\n\x01\x01\x00\x00\x00\x00" + init,
              ClientState.CLOSED: b"RFB 003.008\n\x01\x01\x00\x00\x00\x00" + init,
              ClientState.ERROR: b"RFB 003.008\n\x01\x01\x00\x00\x00\x00" + init + b"\x09"}[state]
    try:
        for data in ([script] if script else []) + ([b""] if state is ClientState.CLOSED else []):
            client.receive_data(data)
            drain_events(client)
    except RemoteProtocolError:
        pass
    assert client.state is state
    return client


CLIENT_CALLS = {
    "set_pixel_format": lambda c: c.set_pixel_format(NATIVE),
    "set_encodings": lambda c: c.set_encodings([C.ENC_RAW, C.ENC_CONTINUOUS_UPDATES]),
    "request_update": lambda c: c.request_update(),
    "key_event": lambda c: c.key_event(0x61, True),
    "pointer_event": lambda c: c.pointer_event(1, 2),
    "cut_text": lambda c: c.cut_text("x"),
    "enable_continuous_updates": lambda c: (c.set_encodings([C.ENC_CONTINUOUS_UPDATES]) if c.state is ClientState.NORMAL
                                            else None, c.enable_continuous_updates()),
    "send_fence": lambda c: c.send_fence(0),
    "set_desktop_size": lambda c: c.set_desktop_size(80, 60),
}


@pytest.mark.parametrize("action", CLIENT_CALLS)
@pytest.mark.parametrize("state", list(ClientState), ids=lambda s: s.value)
def test_client_methods_follow_the_table(state, action):
    assert set(CLIENT_CALLS) == set(client_machine.SENDS)
    client = client_in(state)
    client.data_to_send()
    if state is ClientState.NORMAL:
        CLIENT_CALLS[action](client)
        assert client.data_to_send() and client.state is ClientState.NORMAL
        return
    with pytest.raises(LocalProtocolError) as caught:
        CLIENT_CALLS[action](client)
    assert str(caught.value) == f"client cannot {action} in state {state.value}"
    assert client.state is state


# ---------------------------------------------------------------- the connections follow the tables

def record_transitions(monkeypatch, module) -> list:
    path: list = []
    real = module.transition

    def recording(role, state, event, action=None):
        target = real(role, state, event, action)
        path.append((state, target))
        return target

    monkeypatch.setattr(module, "transition", recording)
    return path


def assert_path_follows_the_table(path: list, observed: list) -> None:
    """The looked-up transitions chain from AWAIT_VERSION; every state seen between bytes lies on that chain."""
    moves = [(a, b) for a, b in path if a is not b]
    chain = [observed[0]] + [b for _, b in moves]
    assert [a for a, _ in moves] == chain[:-1], "a state changed without a table lookup"
    seen = [s for i, s in enumerate(observed) if i == 0 or s is not observed[i - 1]]
    it = iter(chain)
    assert all(any(s is c for c in it) for s in seen), (seen, chain)
    assert seen[-1] is chain[-1]


SERVER_SCRIPTS = {
    "3.8-none": ({}, b"RFB 003.008\n\x01\x01"),
    "3.7-none": ({}, b"RFB 003.007\n\x01\x01"),
    "3.3-none": ({}, b"RFB 003.003\n\x01"),
    "3.8-vnc": ({"security": "vnc", "password": "pw", "challenge": bytes(16)},
                b"RFB 003.008\n\x02" + vncauth.vnc_auth_response("pw", bytes(16)) + b"\x01"),
    "3.3-vnc-wrong": ({"security": "vnc", "password": "pw", "challenge": bytes(16)}, b"RFB 003.003\n" + bytes(16)),
}


@pytest.mark.parametrize("script", SERVER_SCRIPTS)
def test_every_server_state_change_is_a_table_transition(script, monkeypatch):
    path = record_transitions(monkeypatch, server_machine)
    kw, data = SERVER_SCRIPTS[script]
    server = RFBServer(64, 48, **kw)
    observed = [server.state]
    for i in range(len(data)):
        server.receive_data(data[i:i + 1])
        drain_events(server)
        observed.append(server.state)
        server.send_update([]) if server.state is ServerState.NORMAL else None  # our own events: self-loops
    server.receive_data(b"")
    drain_events(server)
    observed.append(server.state)
    assert server.state is ServerState.CLOSED
    assert_path_follows_the_table(path, observed)


@pytest.mark.parametrize("version", [(3, 3), (3, 7), (3, 8)])
@pytest.mark.parametrize("password", [None, "pw"])
def test_every_client_state_change_is_a_table_transition(version, password, monkeypatch):
    path = record_transitions(monkeypatch, client_machine)
    server = RFBServer(64, 48, **({"security": "vnc", "password": password} if password else {}))
    client = RFBClient(version=version, password=password)
    observed = [client.state]
    for _ in range(6):
        data = server.data_to_send()
        for i in range(len(data)):
            client.receive_data(data[i:i + 1])
            drain_events(client)
            observed.append(client.state)
        server.receive_data(client.data_to_send())
        drain_events(server)
    client.request_update()
    client.receive_data(b"")
    drain_events(client)
    observed.append(client.state)
    assert ClientState.NORMAL in observed and client.state is ClientState.CLOSED
    assert_path_follows_the_table(path, observed)


# ---------------------------------------------------------------- the readers in the tables, three ways

def three_ways(reader, data: bytes, expected) -> None:
    assert reader(memoryview(data)) == (expected, len(data))
    for i in range(len(data)):
        assert reader(memoryview(data[:i])) is None, f"prefix of {i} bytes was accepted"
    assert reader(memoryview(data + b"\x07trailing")) == (expected, len(data))


SERVER_READER_SAMPLES = {
    ServerState.AWAIT_VERSION: (b"RFB 003.008\n", M.ProtocolVersion(3, 8)),
    ServerState.AWAIT_SECURITY: (b"\x02", M.SecurityType(C.SEC_VNC_AUTH)),
    ServerState.AWAIT_VNC_RESPONSE: (bytes(range(16)), M.VncAuthResponse(bytes(range(16)))),
    ServerState.AWAIT_CLIENT_INIT: (b"\x00", M.ClientInit(False)),
    ServerState.NORMAL: (CM.write_pointer_event(1, 2, 3), M.PointerEvent(1, 2, 3)),
}
CLIENT_READER_SAMPLES = {
    ClientState.AWAIT_VERSION: (b"RFB 003.889\n", (3, 889)),
    ClientState.AWAIT_SECURITY_TYPES: (b"\x02\x01\x02", (1, 2)),
    ClientState.AWAIT_SECURITY_33: (b"\x00\x00\x00\x02", 2),
    ClientState.AWAIT_CHALLENGE: (bytes(range(16, 32)), M.VncAuthChallenge(bytes(range(16, 32)))),
    ClientState.AWAIT_SERVER_INIT: (H.write_server_init(8, 4, NATIVE, "n"), M.ServerInit(8, 4, "n", NATIVE)),
    ClientState.NORMAL: (SM.write_update_header(7), M.FramebufferUpdateHeader(7)),
}
SECURITY_RESULT_SAMPLES = {
    (3, 3): (b"\x00\x00\x00\x01", M.AuthenticationFailed("authentication failed")),
    (3, 7): (b"\x00\x00\x00\x01", M.AuthenticationFailed("authentication failed")),
    (3, 8): (b"\x00\x00\x00\x01\x00\x00\x00\x02no", M.AuthenticationFailed("no")),
}


@pytest.mark.parametrize("state", list(SERVER_READER_SAMPLES), ids=lambda s: s.value)
def test_server_readers_three_ways(state):
    three_ways(server_machine.READERS[state], *SERVER_READER_SAMPLES[state])


@pytest.mark.parametrize("state", list(CLIENT_READER_SAMPLES) + [ClientState.AWAIT_SECURITY_RESULT],
                         ids=lambda s: s.value)
def test_client_readers_three_ways(state):
    reader = client_machine.READERS[state]
    if isinstance(reader, dict):  # SecurityResult: a reason follows a failure in 3.8 only
        assert set(reader) == set(SECURITY_RESULT_SAMPLES)
        for version, sample in SECURITY_RESULT_SAMPLES.items():
            three_ways(reader[version], *sample)
            three_ways(reader[version], b"\x00\x00\x00\x00", True)
        return
    three_ways(reader, *CLIENT_READER_SAMPLES[state])


SERVER_MESSAGES = [
    (SM.write_update_header(2), M.FramebufferUpdateHeader(2)),
    (b"\x01\x00\x00\x05\x00\x01\xff\xff\x00\x00\x80\x00", M.ColourMapEntries(5, ((0xFFFF, 0, 0x8000),))),
    (SM.write_bell(), M.Bell()),
    (SM.write_server_cut_text("hé"), M.ServerCutText("hé")),
    (SM.write_end_of_continuous_updates(), M.EndOfContinuousUpdates()),
    (b"\xf8\x00\x00\x00\x00\x00\x00\x01\x01z", M.Fence(1, b"z")),
]


@pytest.mark.parametrize("data,expected", SERVER_MESSAGES, ids=lambda v: type(v).__name__)
def test_every_server_message_reader_three_ways(data, expected):
    three_ways(SM.read_server_message, data, expected)
    assert {type(e) for _, e in SERVER_MESSAGES} == set(client_machine.SERVER_MESSAGES)


def test_handshake_readers_added_for_the_tables_three_ways():
    three_ways(H.read_security_type, H.write_security_type(C.SEC_NONE), M.SecurityType(C.SEC_NONE))
    three_ways(H.read_vnc_challenge, bytes(16), M.VncAuthChallenge(bytes(16)))
    three_ways(H.read_vnc_response, bytes(range(16)), M.VncAuthResponse(bytes(range(16))))
    three_ways(SM.read_update_header, b"\x00\x00\xff\xff", M.FramebufferUpdateHeader(M.LAST_RECT_COUNT))
    with pytest.raises(RemoteProtocolError, match="unknown server message type 9"):
        SM.read_server_message(memoryview(b"\x09"))


# ---------------------------------------------------------------- the client's update, read in pieces

def update_stream() -> bytes:
    raw = SM.write_rect_header(1, 0, 2, 1, C.ENC_RAW) + bytes(range(8))
    cursor = SM.write_rect_header(1, 1, 2, 2, C.ENC_CURSOR) + bytes(range(16)) + b"\x80\xc0"
    return (SM.write_update_header(3) + raw + SM.write_rect_header(0, 1, 1, 1, C.ENC_COPYRECT) + struct.pack(">HH", 1, 0)
            + cursor
            + SM.write_update_header(2) + SM.write_extended_desktop_size_rect(6, 3) + SM.write_desktop_size_rect(5, 4)
            + SM.write_update_header(M.LAST_RECT_COUNT) + raw + SM.write_last_rect()
            + SM.write_bell() + write_fence(C.MSG_SERVER_FENCE, M.FENCE_REQUEST, b"f"))


def comparable(events: list) -> list:
    return [("cursor", e.hot_x, e.hot_y, e.pixels.tobytes()) if isinstance(e, M.CursorChanged) else e for e in events]


def feed(chunks: list) -> tuple[Any, ...]:
    encodings = [C.ENC_RAW, C.ENC_COPYRECT, C.ENC_CURSOR, C.ENC_DESKTOP_SIZE, C.ENC_EXTENDED_DESKTOP_SIZE,
                 C.ENC_LAST_RECT, C.ENC_FENCE]
    _, client, _, _ = connected_pair(4, 2, encodings=encodings)
    client.data_to_send()
    events: list = []
    for chunk in chunks:
        client.receive_data(chunk)
        events += drain_events(client)
    return comparable(events), client.framebuffer.copy(), client.data_to_send(), client.update_in_progress


def test_updates_and_messages_read_whole_bytewise_and_with_trailing_bytes():
    stream = update_stream()
    whole = feed([stream])
    events = whole[0]
    assert [type(e).__name__ if not isinstance(e, tuple) else "cursor" for e in events] == [
        "cursor", "FramebufferUpdate", "DesktopResized", "DesktopResized", "FramebufferUpdate",
        "FramebufferUpdate", "Bell", "Fence"]
    assert events[1] == M.FramebufferUpdate([(1, 0, 2, 1, 0), (0, 1, 1, 1, 1), (1, 1, 2, 2, C.ENC_CURSOR)],
                                            4 + 20 + 16 + 30)
    assert events[5].rects == [(1, 0, 2, 1, 0)]
    assert whole[1].shape == (4, 5, 4) and whole[2] == write_fence(C.MSG_CLIENT_FENCE, 0, b"f")
    bytewise = feed([stream[i:i + 1] for i in range(len(stream))])
    trailing = feed([stream + SM.write_update_header(1) + SM.write_rect_header(0, 0, 1, 1, C.ENC_RAW) + b"\x01"])
    for other in (bytewise, trailing):
        assert other[0] == events and (other[1] == whole[1]).all() and other[2] == whole[2]
    assert not whole[3] and trailing[3]  # the trailing update waits, half read


def test_owner_calls_in_the_middle_of_an_update_do_not_disturb_it():
    _, client, _, _ = connected_pair(4, 2, encodings=[C.ENC_RAW, C.ENC_CONTINUOUS_UPDATES])
    pixels = np.arange(8, dtype=np.uint8).reshape(1, 2, 4)
    message = SM.write_update_header(2) + (SM.write_rect_header(0, 0, 2, 1, C.ENC_RAW) + pixels.tobytes()) * 2
    client.receive_data(message[:10])
    assert client.next_event() is NEED_DATA and client.update_in_progress
    client.request_update()
    client.enable_continuous_updates(False)
    client.set_encodings([C.ENC_RAW])  # the server could not have seen it yet: the update goes on as announced
    client.receive_data(message[10:])
    update = client.next_event()
    assert isinstance(update, M.FramebufferUpdate) and len(update.rects) == 2
    assert (client.framebuffer[0, :2, :3] == pixels[0, :, :3]).all()
