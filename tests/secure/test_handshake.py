"""The sans-IO handshake machines, driven alone and in pairs over a fake link."""
from __future__ import annotations

import struct

import pytest

from agent.errors import AuthenticationError
from agent.secure.errors import ChannelError, HandshakeError, WrongPasswordError
from agent.secure.handshake import (
    MAX_MESSAGE,
    AgentHandshake,
    AuthFailed,
    Established,
    Kind,
    State,
    ViewerHandshake,
    encode_message,
)
from agent.secure.records import NEED_DATA, Closed, Data

SESSION = "123456789"
PASSWORD = "k3mx7q"


def _feed(machine: ViewerHandshake | AgentHandshake, data: bytes, *, byte_by_byte: bool = False) -> object:
    """Feed bytes and return the first event that is not NEED_DATA (or NEED_DATA)."""
    chunks = [data[i:i + 1] for i in range(len(data))] if byte_by_byte else [data]
    event: object = NEED_DATA
    for chunk in chunks:
        machine.receive_data(chunk)
        event = machine.next_event()
        if event is not NEED_DATA:
            return event
    return event


def _run(viewer_password: str = PASSWORD, agent_password: str = PASSWORD, *, byte_by_byte: bool = False,
         viewer_session: str = SESSION):
    viewer = ViewerHandshake(viewer_session, viewer_password)
    agent = AgentHandshake(SESSION, agent_password)
    assert _feed(agent, viewer.data_to_send(), byte_by_byte=byte_by_byte) is NEED_DATA
    assert _feed(viewer, agent.data_to_send(), byte_by_byte=byte_by_byte) is NEED_DATA
    agent_outcome = _feed(agent, viewer.data_to_send(), byte_by_byte=byte_by_byte)
    return viewer, agent, agent_outcome


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_both_ends_establish_with_the_same_safety_code(byte_by_byte: bool) -> None:
    viewer, agent, agent_outcome = _run(byte_by_byte=byte_by_byte)
    assert isinstance(agent_outcome, Established)
    viewer_outcome = _feed(viewer, agent.data_to_send(), byte_by_byte=byte_by_byte)
    assert isinstance(viewer_outcome, Established)
    assert viewer_outcome.safety_code == agent_outcome.safety_code
    assert len(viewer_outcome.safety_code) == 4 and viewer_outcome.safety_code.isdigit()
    assert viewer.state is agent.state is State.ESTABLISHED
    # the two channels talk
    agent_outcome.channel.receive_data(viewer_outcome.channel.send_data(b"hello"))
    assert agent_outcome.channel.next_event() == Data(b"hello")


def test_session_id_spacing_does_not_matter() -> None:
    viewer, agent, agent_outcome = _run(viewer_session="123 456 789")
    assert isinstance(agent_outcome, Established)


def test_bytes_after_the_handshake_go_to_the_channel() -> None:
    """The agent may send records right behind its CONFIRM; they must not be lost (trailing bytes)."""
    viewer, agent, agent_outcome = _run()
    assert isinstance(agent_outcome, Established)
    tail = agent_outcome.channel.send_data(b"RFB 003.008\n") + agent_outcome.channel.send_close("done")
    viewer_outcome = _feed(viewer, agent.data_to_send() + tail)
    assert isinstance(viewer_outcome, Established)
    channel = viewer_outcome.channel
    assert channel.next_event() == Data(b"RFB 003.008\n")
    assert channel.next_event() == Closed("done")


def test_agent_sends_nothing_key_derived_before_the_viewer_proves_the_password() -> None:
    viewer = ViewerHandshake(SESSION, PASSWORD)
    agent = AgentHandshake(SESSION, PASSWORD)
    agent_hello = agent.data_to_send()
    assert agent_hello[3] == Kind.HELLO
    assert _feed(agent, viewer.data_to_send()) is NEED_DATA
    assert agent.data_to_send() == b""  # keys derived, but nothing sent until the viewer's MAC checks out
    assert agent.state is State.WANT_CONFIRM


def test_wrong_password_fails_on_both_sides() -> None:
    viewer, agent, agent_outcome = _run(viewer_password="wrong1")
    assert isinstance(agent_outcome, AuthFailed)
    failed = agent.data_to_send()
    assert failed == encode_message(Kind.FAILED, b"")  # no MAC, nothing derived from the keys
    assert agent.state is State.SCARED
    with pytest.raises(WrongPasswordError) as info:
        _feed(viewer, failed)
    assert isinstance(info.value, AuthenticationError) and info.value.exit_code == 3
    assert PASSWORD not in str(info.value) and "wrong1" not in str(info.value)
    # both machines stay failed
    with pytest.raises(WrongPasswordError):
        viewer.next_event()
    assert isinstance(agent.next_event(), AuthFailed)
    agent.receive_data(b"anything at all")  # absorbed
    assert isinstance(agent.next_event(), AuthFailed)


def test_wrong_session_id_is_a_failed_proof() -> None:
    viewer, agent, agent_outcome = _run(viewer_session="987654321")
    assert isinstance(agent_outcome, AuthFailed)


def test_forged_confirmation_without_the_password_is_rejected() -> None:
    viewer = ViewerHandshake(SESSION, PASSWORD)
    agent = AgentHandshake(SESSION, PASSWORD)
    _feed(agent, viewer.data_to_send())
    outcome = _feed(agent, encode_message(Kind.CONFIRM, bytes(32)))
    assert isinstance(outcome, AuthFailed)


def test_agent_confirmation_that_does_not_verify_is_a_wrong_password_for_the_viewer() -> None:
    viewer = ViewerHandshake(SESSION, PASSWORD)
    agent = AgentHandshake(SESSION, PASSWORD)
    _feed(viewer, agent.data_to_send())
    with pytest.raises(WrongPasswordError):
        _feed(viewer, encode_message(Kind.CONFIRM, b"\x01" * 32))


@pytest.mark.parametrize("sender", ["viewer", "agent"])
def test_tampered_hello_never_establishes(sender: str) -> None:
    """A relay that flips a bit anywhere in a HELLO (framing, PAKE message, X25519 key) only breaks the handshake."""
    hello_size = len(ViewerHandshake(SESSION, PASSWORD).data_to_send())
    for offset in [*range(4), *range(4, hello_size, 3), hello_size - 1]:  # framing, then a spread of the body
        viewer = ViewerHandshake(SESSION, PASSWORD)
        agent = AgentHandshake(SESSION, PASSWORD)
        viewer_hello, agent_hello = bytearray(viewer.data_to_send()), bytearray(agent.data_to_send())
        (viewer_hello if sender == "viewer" else agent_hello)[offset] ^= 1 << (offset % 8)
        try:
            assert _feed(agent, bytes(viewer_hello)) is NEED_DATA
            assert _feed(viewer, bytes(agent_hello)) is NEED_DATA
            outcome = _feed(agent, viewer.data_to_send())
        except HandshakeError:
            continue
        assert isinstance(outcome, AuthFailed), offset


def test_reflected_hello_is_refused() -> None:
    agent = AgentHandshake(SESSION, PASSWORD)
    with pytest.raises(HandshakeError):
        _feed(agent, agent.data_to_send())


@pytest.mark.parametrize("message, words", [
    (struct.pack(">HBB", 67, 2, Kind.HELLO) + bytes(65), "version 2"),
    (struct.pack(">HBB", 2, 1, 9), "unknown"),
    (struct.pack(">HBB", 34, 1, Kind.HELLO) + bytes(32), "wrong size"),
    (encode_message(Kind.CONFIRM, bytes(32)), "got CONFIRM in state want-hello"),
    (encode_message(Kind.FAILED, b""), "got FAILED in state want-hello"),
])
def test_malformed_or_out_of_order_messages(message: bytes, words: str) -> None:
    viewer = ViewerHandshake(SESSION, PASSWORD)
    with pytest.raises(HandshakeError, match=words):
        _feed(viewer, message)
    assert viewer.state is State.BROKEN
    with pytest.raises(HandshakeError):
        viewer.next_event()


def test_oversized_length_is_refused_before_the_body_arrives() -> None:
    agent = AgentHandshake(SESSION, PASSWORD)
    agent.receive_data(struct.pack(">HBB", MAX_MESSAGE + 1, 1, Kind.HELLO))
    with pytest.raises(HandshakeError, match="oversized"):
        agent.next_event()


@pytest.mark.parametrize("cut", [0, 1, 3, 40])
def test_eof_during_the_handshake(cut: int) -> None:
    viewer = ViewerHandshake(SESSION, PASSWORD)
    agent = AgentHandshake(SESSION, PASSWORD)
    hello = viewer.data_to_send()
    if cut:
        agent.receive_data(hello[:cut])
    agent.receive_data(b"")
    with pytest.raises(HandshakeError, match="closed during the handshake"):
        agent.next_event()


def test_errors_are_channel_errors_and_name_no_secret() -> None:
    assert issubclass(HandshakeError, ChannelError)
    viewer = ViewerHandshake(SESSION, "s3cr3t-pass")
    assert "s3cr3t" not in repr(viewer)
