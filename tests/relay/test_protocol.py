"""The relay's sans-IO line protocol and session ID helpers."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import UsageError
from agent.relay import protocol as p

HELLOS = [
    (b'{"v":1,"role":"agent"}', p.AgentHello()),
    (b'{"v":1,"role":"agent","session":"123456789","token":"tok_EN-1"}', p.AgentHello("123456789", "tok_EN-1")),
    (b'{"v":1,"role":"viewer","session":"123 456 789"}', p.ViewerHello("123456789")),
    (b'{"v":1,"role":"viewer","session":" 123-456 789 "}', p.ViewerHello("123456789")),
    (b'{"v":1,"role":"agent-data","session":"987654321","ticket":"abc"}', p.AgentDataHello("987654321", "abc")),
]


def _read_all(reader: p.LineReader, chunks: list[bytes]) -> list[bytes]:
    lines = []
    for chunk in chunks:
        reader.receive_data(chunk)
        while (line := reader.next_line()) is not None:
            lines.append(line)
    return lines


@pytest.mark.parametrize("mode", ["whole", "byte-by-byte", "trailing"])
@pytest.mark.parametrize("line, expected", HELLOS)
def test_hello_three_ways(mode: str, line: bytes, expected: p.Hello) -> None:
    wire = line + b"\n"
    reader = p.LineReader()
    if mode == "whole":
        lines = _read_all(reader, [wire])
        assert reader.trailing() == b""
    elif mode == "byte-by-byte":
        lines = _read_all(reader, [wire[i:i + 1] for i in range(len(wire))])
        assert reader.trailing() == b""
    else:
        reader.receive_data(wire + b"\x00\x43\x01\x01binary channel bytes\n{not json")
        lines = [reader.next_line()]  # type: ignore[list-item]
        assert reader.trailing() == b"\x00\x43\x01\x01binary channel bytes\n{not json"  # untouched
    assert lines == [line]
    assert p.parse_hello(lines[0]) == expected


def test_hellos_encode_and_parse_back() -> None:
    for _, hello in HELLOS:
        encoded = hello.encode()
        assert encoded.endswith(b"\n") and len(encoded) <= p.MAX_LINE
        assert p.parse_hello(encoded[:-1]) == hello


REPLIES = [
    p.Registered("123456789", "t0k-en"), p.Waiting(), p.Paired(), p.ViewerArrived("ticket_1"), p.Keepalive(),
    p.ErrorReply("no such session"),
]


@pytest.mark.parametrize("reply", REPLIES)
def test_replies_round_trip(reply: p.Reply) -> None:
    wire = reply.encode()
    reader = p.LineReader()
    assert _read_all(reader, [wire[i:i + 1] for i in range(len(wire))]) == [wire[:-1]]
    assert p.parse_reply(wire[:-1]) == reply


def test_wire_format_is_the_documented_one() -> None:
    assert json.loads(p.Registered("123456789", "x").encode()) == {"status": "registered", "session": "123456789",
                                                                    "token": "x"}
    assert json.loads(p.ViewerArrived("t").encode()) == {"event": "viewer", "ticket": "t"}
    assert json.loads(p.ErrorReply("session busy").encode()) == {"status": "error", "reason": "session busy"}
    assert json.loads(p.AgentDataHello("123456789", "t").encode()) == {
        "v": 1, "role": "agent-data", "session": "123456789", "ticket": "t"}


def test_secrets_stay_out_of_repr() -> None:
    assert "s3cret" not in repr(p.AgentHello("123456789", "s3cret"))
    assert "s3cret" not in repr(p.AgentDataHello("123456789", "s3cret"))
    assert "s3cret" not in repr(p.Registered("123456789", "s3cret"))
    assert "s3cret" not in repr(p.ViewerArrived("s3cret"))


@pytest.mark.parametrize("line, reason", [
    (b"", p.MALFORMED),
    (b"not json", p.MALFORMED),
    (b"\xff\xfe", p.MALFORMED),
    (b"[1,2]", p.MALFORMED),
    (b"[" * 1000 + b"]" * 1000, p.MALFORMED),
    (b'{"role":"viewer","session":"123456789"}', p.MALFORMED),
    (b'{"v":true,"role":"agent"}', p.MALFORMED),
    (b'{"v":"1","role":"agent"}', p.MALFORMED),
    (b'{"v":2,"role":"agent"}', p.UNSUPPORTED_VERSION),
    (b'{"v":1,"role":"admin"}', p.MALFORMED),
    (b'{"v":1,"role":"viewer"}', p.MALFORMED),
    (b'{"v":1,"role":"viewer","session":"12345678"}', p.MALFORMED),
    (b'{"v":1,"role":"viewer","session":"023456789"}', p.MALFORMED),
    (b'{"v":1,"role":"viewer","session":123456789}', p.MALFORMED),
    (b'{"v":1,"role":"agent","session":"123456789"}', p.MALFORMED),
    (b'{"v":1,"role":"agent","token":"abc"}', p.MALFORMED),
    (b'{"v":1,"role":"agent-data","session":"123456789"}', p.MALFORMED),
    (b'{"v":1,"role":"agent-data","session":"123456789","ticket":"a b"}', p.MALFORMED),
    (b'{"v":1,"role":"agent-data","session":"123456789","ticket":"' + b"a" * 129 + b'"}', p.MALFORMED),
])
def test_bad_hellos(line: bytes, reason: str) -> None:
    with pytest.raises(p.RelayProtocolError) as info:
        p.parse_hello(line)
    assert info.value.reason == reason


@pytest.mark.parametrize("line", [b'{"status":"registered","session":"1"}', b'{"status":"odd"}', b'{"event":"x"}',
                                  b'{"status":"error"}', b'{"event":"viewer"}', b"42"])
def test_bad_replies(line: bytes) -> None:
    with pytest.raises(p.RelayProtocolError):
        p.parse_reply(line)


def test_line_limit_is_one_kib_including_the_newline() -> None:
    reader = p.LineReader()
    reader.receive_data(b"x" * (p.MAX_LINE - 1) + b"\n")
    assert reader.next_line() == b"x" * (p.MAX_LINE - 1)
    reader = p.LineReader()
    reader.receive_data(b"x" * p.MAX_LINE + b"\n")
    with pytest.raises(p.RelayProtocolError) as info:
        reader.next_line()
    assert info.value.reason == p.LINE_TOO_LONG


def test_an_incomplete_line_is_refused_once_it_passes_the_limit() -> None:
    reader = p.LineReader()
    for _ in range(p.MAX_LINE - 1):
        reader.receive_data(b"y")
        assert reader.next_line() is None
    reader.receive_data(b"y")
    with pytest.raises(p.RelayProtocolError):
        reader.next_line()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2 * p.MAX_LINE))
def test_parser_only_produces_hellos_or_protocol_errors(data: bytes) -> None:
    """Fuzzing invariant: garbage gives a hello or RelayProtocolError, nothing else."""
    reader = p.LineReader()
    reader.receive_data(data)
    try:
        line = reader.next_line()
        if line is not None:
            p.parse_hello(line)
    except p.RelayProtocolError:
        pass


def test_format_and_parse_session_id() -> None:
    assert p.format_session_id("123456789") == "123 456 789"
    assert p.format_session_id("123 456 789") == "123 456 789"
    for text in ["123456789", "123 456 789", "123-456-789", " 123  456\t789 ", "1-2-3-4-5-6-7-8-9"]:
        assert p.parse_session_id(text) == "123456789"


@pytest.mark.parametrize("text", ["", "12345678", "1234567890", "023456789", "12345678a", "123.456.789",
                                  "١٢٣٤٥٦٧٨٩", "123_456_789"])
def test_parse_session_id_refuses_anything_else(text: str) -> None:
    with pytest.raises(p.InvalidSessionIdError) as info:
        p.parse_session_id(text)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_new_session_ids_are_nine_digits_not_starting_with_zero() -> None:
    ids = {p.new_session_id() for _ in range(2000)}
    assert len(ids) > 1990
    assert all(len(i) == 9 and i.isdigit() and i[0] != "0" for i in ids)
    assert p.short_session_id("123456789") == "123…"
    assert len({p.new_secret() for _ in range(100)}) == 100


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:7400", ("0.0.0.0", 7400)), ("relay.example.com", ("relay.example.com", 7400)),
    ("[::1]:9000", ("::1", 9000)), ("[::]", ("::", 7400)), ("localhost:1", ("localhost", 1)),
])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert p.parse_address(text) == expected


@pytest.mark.parametrize("text", ["", ":7400", "host:", "host:0", "host:70000", "::1:7400", "host:port", "a b:1"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(p.AddressError):
        p.parse_address(text)


def test_error_mapping() -> None:
    assert isinstance(p.error_for(p.NO_SUCH_SESSION, "123456789"), p.NoSuchSessionError)
    assert "123 456 789" in str(p.error_for(p.NO_SUCH_SESSION, "123456789"))
    assert isinstance(p.error_for(p.SESSION_BUSY), p.SessionBusyError)
    other = p.error_for("hello timeout")
    assert type(other) is p.RelayError and other.reason == "hello timeout" and other.exit_code == 1


def test_rate_limiter_buckets_refill_and_stay_bounded_in_memory() -> None:
    from agent.relay.limits import RateLimiter

    now = [0.0]
    limiter = RateLimiter(3, 1.0, clock=lambda: now[0], max_sources=100)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert not limiter.peek("a")
    now[0] += 1.0
    assert limiter.allow("a") and not limiter.allow("a")
    for n in range(10_000):  # a spray of sources
        limiter.allow(f"s{n}")
    assert len(limiter) == 100
