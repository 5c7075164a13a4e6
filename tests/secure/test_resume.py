"""The resume handshake (agent.secure.resume), sans-IO: a resume derives equal fresh keys on both ends; a wrong
secret, a replayed RESUME, tampered messages and someone who only knows the password are all refused, every
check through the constant-time compare."""
from __future__ import annotations

import itertools
from typing import Any

import pytest

import agent.secure.resume as resume_module
from agent.sansio import NEED_DATA
from agent.secure.errors import ChannelError, HandshakeError
from agent.secure.handshake import Kind, encode_message
from agent.secure.keyschedule import derive, derive_session_keys, resume_id
from agent.secure.records import Channel, Data, Role
from agent.secure.resume import AgentResume, Refused, ResumeRefusedError, Resumed, ViewerResume

SESSION = "123456789"
PASSWORD = "k3mx7q"
SECRET = derive_session_keys(b"s" * 32, b"x" * 32, b"t" * 32).resumption


def counter_entropy(seed: int):
    counter = itertools.count(seed)
    return lambda n: bytes([next(counter) % 256]) * n


def shuttle(src: Any, dst: Any) -> None:
    data = src.data_to_send()
    if data:
        dst.receive_data(data)


def run(viewer: ViewerResume, agent: AgentResume) -> tuple[object, object]:
    """Run both machines to their outcome over a perfect link."""
    shuttle(viewer, agent)                      # RESUME
    assert agent.next_event() is NEED_DATA
    shuttle(agent, viewer)                      # RESUMED
    viewer_outcome = viewer.next_event()
    shuttle(viewer, agent)                      # CONFIRM
    return viewer_outcome, agent.next_event()


def machines(viewer_secret: bytes = SECRET, agent_secret: bytes = SECRET, *, viewer_received: int = 1234,
             agent_received: int = 5678) -> tuple[ViewerResume, AgentResume, list[int]]:
    asked: list[int] = []

    def received() -> int:
        asked.append(agent_received)
        return agent_received

    viewer = ViewerResume(SESSION, viewer_secret, viewer_received, entropy=counter_entropy(1))
    agent = AgentResume(SESSION, agent_secret, received, entropy=counter_entropy(100))
    return viewer, agent, asked


def assert_channels_talk(viewer: Channel, agent: Channel) -> None:
    agent.receive_data(viewer.send_data(b"input"))
    assert agent.next_event() == Data(b"input")
    viewer.receive_data(agent.send_data(b"frame"))
    assert viewer.next_event() == Data(b"frame")


def test_a_resume_derives_equal_fresh_keys_on_both_ends() -> None:
    viewer, agent, asked = machines()
    v, a = run(viewer, agent)
    assert isinstance(v, Resumed) and isinstance(a, Resumed)
    assert v.peer_received == 5678 and a.peer_received == 1234  # where each end replays from
    assert asked == [5678]                                       # asked once, after the id matched
    assert v.channel.role is Role.VIEWER and a.channel.role is Role.AGENT
    assert_channels_talk(v.channel, a.channel)
    # a new resumption secret, the same on both ends, unrelated to the old one
    assert v.channel.resumption_secret == a.channel.resumption_secret != SECRET
    assert len(v.channel.resumption_secret) == 32
    assert v.channel.safety_code == a.channel.safety_code
    # the outcome repeats; nothing more to send
    assert agent.next_event() is a and viewer.next_event() is v
    assert agent.data_to_send() == viewer.data_to_send() == b""


def test_fresh_ephemeral_keys_give_unrelated_channel_keys() -> None:
    first = run(*machines()[:2])
    viewer = ViewerResume(SESSION, SECRET, 1234, entropy=counter_entropy(7))
    agent = AgentResume(SESSION, SECRET, lambda: 5678, entropy=counter_entropy(200))
    second = run(viewer, agent)
    assert first[0].channel.resumption_secret != second[0].channel.resumption_secret
    other = first[1].channel
    other.receive_data(second[0].channel.send_data(b"x"))
    with pytest.raises(Exception):
        other.next_event()


def test_a_resume_works_whole_and_one_byte_at_a_time() -> None:
    viewer, agent, _ = machines()
    for byte in viewer.data_to_send():
        agent.receive_data(bytes([byte]))
        assert agent.next_event() is NEED_DATA
    outcome = None
    for byte in agent.data_to_send():
        assert outcome is None
        viewer.receive_data(bytes([byte]))
        event = viewer.next_event()
        outcome = None if event is NEED_DATA else event
    assert isinstance(outcome, Resumed)
    confirm = viewer.data_to_send()
    for i, byte in enumerate(confirm):
        agent.receive_data(bytes([byte]))
        event = agent.next_event()
        assert (event is NEED_DATA) == (i < len(confirm) - 1)
    assert isinstance(event, Resumed)


def test_records_that_arrive_with_the_last_handshake_message_go_to_the_channel() -> None:
    """The viewer writes its first records (the replay) right behind CONFIRM, so one read can hold both: the
    agent's channel must start with those bytes, or its first record is lost and the resumed connection fails
    at once ("record 0 is not authentic"), again and again on a busy machine."""
    viewer, agent, _ = machines()
    shuttle(viewer, agent)                      # RESUME
    assert agent.next_event() is NEED_DATA
    shuttle(agent, viewer)                      # RESUMED
    v = viewer.next_event()
    assert isinstance(v, Resumed)
    agent.receive_data(viewer.data_to_send() + v.channel.send_data(b"replayed") + v.channel.send_data(b"input"))
    a = agent.next_event()                      # CONFIRM and the two records, in one read
    assert isinstance(a, Resumed)
    assert a.channel.next_event() == Data(b"replayed")
    assert a.channel.next_event() == Data(b"input")
    assert a.channel.next_event() is NEED_DATA


def test_an_eof_right_behind_the_last_handshake_message_reaches_the_channel() -> None:
    viewer, agent, _ = machines()
    shuttle(viewer, agent)
    agent.next_event()
    shuttle(agent, viewer)
    viewer.next_event()
    shuttle(viewer, agent)
    agent.receive_data(b"")
    a = agent.next_event()
    assert isinstance(a, Resumed)
    with pytest.raises(ChannelError):
        a.channel.next_event()


def test_a_wrong_secret_is_refused_before_the_agent_touches_its_connection() -> None:
    viewer, agent, asked = machines(viewer_secret=bytes(32))
    shuttle(viewer, agent)
    assert isinstance(agent.next_event(), Refused)
    assert asked == []  # the live connection was not detached for a stranger
    shuttle(agent, viewer)  # FAILED
    with pytest.raises(ResumeRefusedError):
        viewer.next_event()


def test_someone_with_only_the_password_is_refused() -> None:
    # They know the session ID and the (used) password, and saw RESUME's id on the wire; they lack the
    # resumption secret: every secret they can make from the password is refused.
    for guess in (PASSWORD.encode(), derive(PASSWORD.encode(), b"rejnet/v1:resume"),
                  derive_session_keys(PASSWORD.encode(), b"\0" * 32, b"t" * 32).resumption):
        viewer, agent, asked = machines(viewer_secret=guess)
        shuttle(viewer, agent)
        assert isinstance(agent.next_event(), Refused)
    # Even with the sniffed id in a RESUME of their own, they cannot confirm.
    stranger = ViewerResume(SESSION, SECRET, 0, entropy=counter_entropy(50))  # stands for the sniffed id only
    forged_resume = stranger.data_to_send()
    agent = AgentResume(SESSION, SECRET, lambda: 0, entropy=counter_entropy(100))
    agent.receive_data(forged_resume)
    assert agent.next_event() is NEED_DATA
    agent.data_to_send()
    guessed = derive_session_keys(PASSWORD.encode(), b"\0" * 32, b"t" * 32)
    from agent.secure.keyschedule import confirmation_mac

    agent.receive_data(encode_message(Kind.CONFIRM, confirmation_mac(guessed.confirm_viewer, b"t" * 32)))
    assert isinstance(agent.next_event(), Refused)


def test_a_replayed_resume_cannot_be_confirmed() -> None:
    viewer, agent, _ = machines()
    recorded_resume = viewer.data_to_send()
    agent.receive_data(recorded_resume)
    agent.next_event()
    recorded_resumed = agent.data_to_send()
    viewer.receive_data(recorded_resumed)
    assert isinstance(viewer.next_event(), Resumed)
    recorded_confirm = viewer.data_to_send()
    # An attacker replays the recorded RESUME and CONFIRM to the agent: the agent's fresh X25519 key
    # changes the transcript, so the old CONFIRM does not verify.
    replay = AgentResume(SESSION, SECRET, lambda: 5678, entropy=counter_entropy(300))
    replay.receive_data(recorded_resume)
    assert replay.next_event() is NEED_DATA
    replay.data_to_send()
    replay.receive_data(recorded_confirm)
    assert isinstance(replay.next_event(), Refused)


def test_after_a_resume_the_old_secret_no_longer_names_the_session() -> None:
    v, a = run(*machines()[:2])
    viewer = ViewerResume(SESSION, SECRET, 0, entropy=counter_entropy(9))          # the old secret
    agent = AgentResume(SESSION, a.channel.resumption_secret, lambda: 0, entropy=counter_entropy(400))
    shuttle(viewer, agent)
    assert isinstance(agent.next_event(), Refused)
    # and the new one does
    viewer = ViewerResume(SESSION, v.channel.resumption_secret, 0, entropy=counter_entropy(11))
    agent = AgentResume(SESSION, a.channel.resumption_secret, lambda: 0, entropy=counter_entropy(500))
    assert all(isinstance(o, Resumed) for o in run(viewer, agent))


def test_a_resume_for_another_session_id_fails() -> None:
    viewer = ViewerResume("987654321", SECRET, 0, entropy=counter_entropy(1))
    agent = AgentResume(SESSION, SECRET, lambda: 0, entropy=counter_entropy(100))
    shuttle(viewer, agent)
    agent.next_event()
    shuttle(agent, viewer)
    with pytest.raises(ResumeRefusedError):
        viewer.next_event()


def _flip(message: bytes, offset_from_end: int) -> bytes:
    data = bytearray(message)
    data[-offset_from_end] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize("offset", [1, 32, 33, 40, 41, 72])  # the agent's MAC, its count, its X25519 key
def test_a_tampered_resumed_is_refused_by_the_viewer(offset: int) -> None:
    viewer, agent, _ = machines()
    shuttle(viewer, agent)
    agent.next_event()
    viewer.receive_data(_flip(agent.data_to_send(), offset))
    with pytest.raises((ResumeRefusedError, HandshakeError)):
        viewer.next_event()
    assert viewer.data_to_send() == b""  # no CONFIRM for a forger


@pytest.mark.parametrize("offset", [1, 8, 9, 40])  # the viewer's count, its X25519 key
def test_a_tampered_resume_body_is_refused(offset: int) -> None:
    viewer, agent, asked = machines()
    agent.receive_data(_flip(viewer.data_to_send(), offset))
    assert agent.next_event() is NEED_DATA  # the id still matches; the transcript differs
    viewer.receive_data(agent.data_to_send())
    with pytest.raises((ResumeRefusedError, HandshakeError)):
        viewer.next_event()


@pytest.mark.parametrize("offset", [1, 16, 32])
def test_a_tampered_confirm_is_refused_by_the_agent(offset: int) -> None:
    viewer, agent, _ = machines()
    shuttle(viewer, agent)
    agent.next_event()
    shuttle(agent, viewer)
    assert isinstance(viewer.next_event(), Resumed)
    agent.receive_data(_flip(viewer.data_to_send(), offset))
    assert isinstance(agent.next_event(), Refused)


@pytest.mark.parametrize("message", [
    encode_message(Kind.HELLO, bytes(33 + 32)),       # a PAKE HELLO where a RESUME belongs
    encode_message(Kind.CONFIRM, bytes(32)),
    b"\x00\x03\x01\x04",                              # a RESUME of the wrong size
    b"\x00\x3a\x09\x04" + bytes(56),                  # another version
    b"\xff\xff\x01\x04",                              # oversized
])
def test_malformed_first_messages_fail_the_agent(message: bytes) -> None:
    agent = AgentResume(SESSION, SECRET, lambda: 0)
    agent.receive_data(message)
    with pytest.raises(HandshakeError) as raised:
        agent.next_event()
    with pytest.raises(HandshakeError) as again:  # and it stays failed
        agent.next_event()
    assert again.value is raised.value


def test_a_connection_closed_mid_resume_fails() -> None:
    agent = AgentResume(SESSION, SECRET, lambda: 0)
    agent.receive_data(ViewerResume(SESSION, SECRET, 0).data_to_send()[:10])
    agent.receive_data(b"")
    with pytest.raises(HandshakeError, match="closed"):
        agent.next_event()


def test_every_check_goes_through_the_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("agent.secure.keyschedule.hmac.compare_digest", spy)
    monkeypatch.setattr(resume_module, "mac_matches", resume_module.mac_matches)
    viewer, agent, _ = machines()
    run(viewer, agent)
    # the resume id (agent), the agent's MAC (viewer), the viewer's MAC (agent)
    assert [len(a) for a, _ in calls] == [16, 32, 32]
    calls.clear()
    viewer, agent, _ = machines(viewer_secret=bytes(32))
    shuttle(viewer, agent)
    agent.next_event()
    assert len(calls) == 1 and calls[0][0] == resume_id(SECRET)


def test_no_secret_in_reprs_or_errors() -> None:
    viewer, agent, _ = machines(viewer_secret=bytes(32))
    shuttle(viewer, agent)
    agent.next_event()
    shuttle(agent, viewer)
    with pytest.raises(ResumeRefusedError) as raised:
        viewer.next_event()
    for text in (repr(viewer), repr(agent), str(raised.value)):
        assert SECRET.hex() not in text and repr(SECRET) not in text
    v, a = run(*machines()[:2])
    assert v.channel.resumption_secret.hex() not in repr(v) + repr(a)
