"""Control protocol, sans-IO: every reader run three ways (whole, byte by byte, trailing bytes kept)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.control.protocol import (
    BAD_ARGUMENT,
    BAD_JSON,
    BAD_REQUEST,
    CLOSED,
    LINE_TOO_LONG,
    NEED_DATA,
    UNKNOWN_COMMAND,
    BadRequest,
    ClientConnection,
    ControlError,
    Event,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
    Request,
    ServerConnection,
    encode_error,
    encode_event,
    encode_reply,
    encode_request,
    ends_by_other_side,
)

SHA = "ab" * 32


def drain(conn, data: bytes, step: int | None = None, eof: bool = True) -> list:
    """Feed ``data`` in chunks of ``step`` bytes (all at once when None), collecting every event."""
    events = []
    chunks = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for chunk in chunks + ([b""] if eof else []):
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
            if event is CLOSED:
                return events
    return events


def server_events(data: bytes, max_line: int = 65536) -> list:
    """The events of ``data`` read whole and byte by byte, which must agree."""
    whole = drain(ServerConnection(max_line), data)
    bytewise = drain(ServerConnection(max_line), data, step=1)
    assert whole == bytewise
    assert whole[-1] is CLOSED
    return whole[:-1]


def line(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


@pytest.mark.parametrize("obj, expected", [
    ({"id": 1, "cmd": "status"}, Request(1, "status", {})),
    ({"cmd": "credentials"}, Request(None, "credentials", {})),
    ({"id": "a7", "cmd": "accept"}, Request("a7", "accept", {})),
    ({"id": 2, "cmd": "reject"}, Request(2, "reject", {})),
    ({"id": 3, "cmd": "consent", "scope": "view", "terms_version": "pomoc-zdalna-v1", "terms_sha256": SHA.upper()},
     Request(3, "consent", {"scope": "view", "terms_version": "pomoc-zdalna-v1", "terms_sha256": SHA})),
    ({"id": 4, "cmd": "set_scope", "scope": "control"}, Request(4, "set_scope", {"scope": "control"})),
    ({"id": 5, "cmd": "terminate"}, Request(5, "terminate", {})),
    ({"id": 6, "cmd": "terminate", "reason": "done"}, Request(6, "terminate", {"reason": "done"})),
    ({"id": 7, "cmd": "subscribe"}, Request(7, "subscribe", {})),
])
def test_valid_requests(obj, expected):
    assert server_events(line(obj)) == [expected]


@pytest.mark.parametrize("data, code, request_id", [
    (b"{nope\n", BAD_JSON, None),
    (b"\xff\xfe{}\n", BAD_JSON, None),
    (b'{"cmd": "status", "x": NaN}\n', BAD_JSON, None),
    (b"[" * 5000 + b"]" * 5000 + b"\n", BAD_JSON, None),  # nesting deep enough to exhaust the decoder
    (b"[1, 2]\n", BAD_REQUEST, None),
    (b'"status"\n', BAD_REQUEST, None),
    (b'{"id": 1}\n', BAD_REQUEST, 1),
    (b'{"id": 1, "cmd": 5}\n', BAD_REQUEST, 1),
    (b'{"id": true, "cmd": "status"}\n', BAD_REQUEST, None),
    (b'{"id": 1.5, "cmd": "status"}\n', BAD_REQUEST, None),
    (b'{"id": {"a": 1}, "cmd": "status"}\n', BAD_REQUEST, None),
    (line({"id": "x" * 65, "cmd": "status"}), BAD_REQUEST, None),
    (b'{"id": 9, "cmd": "reboot"}\n', UNKNOWN_COMMAND, 9),
    (b'{"id": 9, "cmd": "status", "verbose": true}\n', BAD_ARGUMENT, 9),
    (line({"id": 1, "cmd": "set_scope"}), BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "set_scope", "scope": "admin"}), BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "consent", "scope": "view", "terms_version": "v1"}), BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "consent", "scope": "view", "terms_version": "v1", "terms_sha256": "ab" * 31}),
     BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "consent", "scope": "view", "terms_version": "v1", "terms_sha256": "zz" * 32}),
     BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "consent", "scope": "view", "terms_version": "../etc/passwd", "terms_sha256": SHA}),
     BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "consent", "scope": "view", "terms_version": 7, "terms_sha256": SHA}), BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "terminate", "reason": "x" * 201}), BAD_ARGUMENT, 1),
    (line({"id": 1, "cmd": "terminate", "reason": None}), BAD_ARGUMENT, 1),
])
def test_bad_lines_get_a_code_and_reading_carries_on(data, code, request_id):
    events = server_events(data + line({"id": 99, "cmd": "status"}))
    assert len(events) == 2
    assert isinstance(events[0], BadRequest)
    assert (events[0].code, events[0].id) == (code, request_id)
    assert events[0].message
    assert events[1] == Request(99, "status", {})


def test_bad_argument_message_names_the_argument():
    [bad] = server_events(line({"id": 1, "cmd": "set_scope", "scope": "admin"}))
    assert "'scope'" in bad.message


def test_trailing_bytes_are_kept_until_their_line_ends():
    conn = ServerConnection()
    partial = b'{"id": 2, "cmd": "cred'
    events = drain(conn, line({"id": 1, "cmd": "status"}) + partial, eof=False)
    assert events == [Request(1, "status", {})]
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b'entials"}\n')
    assert conn.next_event() == Request(2, "credentials", {})
    assert conn.next_event() is NEED_DATA


def test_crlf_blank_lines_and_an_unterminated_last_line():
    data = b'\r\n\n{"id": 1, "cmd": "status"}\r\n   \n{"id": 2, "cmd": "accept"}'
    assert server_events(data) == [Request(1, "status", {}), Request(2, "accept", {})]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_line_cap_is_exact(newline):
    cap = 200
    fits = json.dumps({"cmd": "status", "id": "x" * 40}).encode()
    fits = fits + b" " * (cap - len(fits))  # JSON allows trailing spaces: exactly cap bytes
    assert len(fits) == cap
    too_long = fits + b" "
    events = server_events(fits + newline + too_long + newline + fits + newline, max_line=cap)
    assert events[0] == Request("x" * 40, "status", {})
    assert isinstance(events[1], BadRequest) and events[1].code == LINE_TOO_LONG and events[1].id is None
    assert events[2] == Request("x" * 40, "status", {})
    assert len(events) == 3


def test_oversized_line_is_discarded_without_being_kept():
    conn = ServerConnection(max_line=1024)
    conn.receive_data(b"x" * 5000)
    event = conn.next_event()
    assert isinstance(event, BadRequest) and event.code == LINE_TOO_LONG
    for _ in range(100):  # the rest of the line is thrown away as it comes, never buffered
        conn.receive_data(b"y" * 5000)
        assert conn.next_event() is NEED_DATA
        assert len(conn._lines._buf) == 0
    conn.receive_data(b"zz\n" + line({"id": 3, "cmd": "status"}))
    assert conn.next_event() == Request(3, "status", {})
    assert conn.next_event() is NEED_DATA


def test_oversized_unterminated_last_line():
    events = server_events(b"x" * 300, max_line=100)
    assert [event.code for event in events] == [LINE_TOO_LONG]


def test_default_cap_is_64_kib():
    request = json.dumps({"id": 1, "cmd": "terminate", "reason": "r"}).encode()
    padded = request + b" " * (65536 - len(request))
    assert server_events(padded + b"\n")[0] == Request(1, "terminate", {"reason": "r"})
    assert server_events(padded + b" \n")[0].code == LINE_TOO_LONG


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_garbage_only_ever_yields_requests_or_bad_requests(data, step):
    whole = drain(ServerConnection(max_line=64), data)
    chunked = drain(ServerConnection(max_line=64), data, step=step)
    assert whole == chunked
    assert whole[-1] is CLOSED
    assert all(isinstance(event, (Request, BadRequest)) for event in whole[:-1])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([
    ("status", {}), ("credentials", {}), ("accept", {}), ("reject", {}), ("subscribe", {}),
    ("set_scope", {"scope": "view"}), ("terminate", {"reason": "bye\nnow"}),
    ("consent", {"scope": "control", "terms_version": "pomoc-zdalna-v1", "terms_sha256": SHA}),
]), max_size=10), st.integers(min_value=1, max_value=17))
def test_client_requests_round_trip_through_the_server_reader(requests, step):
    client = ClientConnection()
    data = b""
    expected = []
    for cmd, args in requests:
        request_id, out = client.send_request(cmd, args)
        data += out
        expected.append(Request(request_id, cmd, args))
    assert drain(ServerConnection(), data, step=step)[:-1] == expected


def test_encoders():
    assert encode_reply(1, {"state": "waiting", "scope": None}) == b'{"id":1,"ok":true,"state":"waiting","scope":null}\n'
    assert encode_error(None, "bad_json", "no") == b'{"id":null,"ok":false,"error":{"code":"bad_json","message":"no"}}\n'
    assert encode_event({"event": "state", "state": "active"}) == b'{"event":"state","state":"active"}\n'
    assert encode_event({"event": "x", "text": "a\nb\u2028"}).count(b"\n") == 1  # one line whatever the text


@pytest.mark.parametrize("call", [
    lambda: encode_reply(1, {"ok": False}),
    lambda: encode_reply(1, {"id": 2}),
    lambda: encode_reply(1, {"error": "x"}),
    lambda: encode_reply(1, {"when": object()}),
    lambda: encode_reply(1, {"x": float("nan")}),
    lambda: encode_event({"state": "x"}),
    lambda: encode_event({"event": ""}),
    lambda: encode_event({"event": "x", "id": 1}),
    lambda: encode_request(1, "reboot"),
    lambda: encode_request(1, "set_scope", {"scope": "root"}),
    lambda: encode_request(1, "status", {"extra": 1}),
    lambda: encode_request(True, "status"),
])
def test_encoders_refuse_what_the_protocol_does_not_allow(call):
    with pytest.raises(LocalProtocolError):
        call()


def client_events(data: bytes) -> list:
    whole = drain(ClientConnection(), data)
    assert whole == drain(ClientConnection(), data, step=1)
    return whole[:-1]


def test_client_reads_replies_and_events():
    data = (encode_reply(1, {"session": "123456789"}) + encode_event({"event": "state", "state": "active"})
            + encode_error(2, "bad_state", "not now"))
    reply, event, error = client_events(data)
    assert reply == Reply(1, True, {"session": "123456789"})
    assert event == Event("state", {"state": "active"})
    assert (error.ok, error.error_code, error.error_message) == (False, "bad_state", "not now")
    assert error.as_dict() == {"id": 2, "ok": False, "error": {"code": "bad_state", "message": "not now"}}


@pytest.mark.parametrize("data", [
    b"not json\n",
    b"[1]\n",
    b'{"id": 1}\n',
    b'{"id": 1, "ok": false}\n',
    b'{"id": 1, "ok": false, "error": {"code": 1, "message": "m"}}\n',
    b'{"event": 5}\n',
    b"x" * (4 * 65536 + 10) + b"\n",
])
def test_client_refuses_garbage_from_the_agent(data):
    conn = ClientConnection()
    with pytest.raises(RemoteProtocolError):
        drain(conn, data)
    with pytest.raises(RemoteProtocolError):  # and stays failed
        conn.next_event()


def test_control_error_carries_code_and_message():
    exc = ControlError("bad_state", "no viewer is waiting")
    assert (exc.code, exc.message) == ("bad_state", "no viewer is waiting")


@pytest.mark.parametrize("fields, by_other_side", [
    ({"by": "remote", "reason": "technician ended"}, True),
    ({"by": "local", "reason": "consent_refused"}, True),
    ({"by": "local", "reason": "terminated"}, False),
])
def test_ended_by_other_side(fields, by_other_side):
    assert ends_by_other_side(Event("ended", fields)) is by_other_side
    assert ends_by_other_side(Event("state", fields)) is False
