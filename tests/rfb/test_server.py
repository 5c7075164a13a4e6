"""The sans-IO RFBServer, driven byte by byte: handshakes per version, security, normal phase."""
from __future__ import annotations

import struct

import pytest

from agent.rfb import client_messages as CM
from agent.rfb import constants as C
from agent.rfb import handshake as H
from agent.rfb import messages as M
from agent.rfb import server_messages as SM
from agent.rfb import vncauth
from agent.rfb import wire as W
from agent.sansio import LocalProtocolError, RemoteProtocolError
from agent.rfb.pixelformat import BGR233, NATIVE, PixelFormat
from agent.rfb.server import NEED_DATA, RFBServer, ServerState, negotiate_version

CHALLENGE = bytes(range(100, 116))
SERVER_INIT = H.write_server_init(640, 480, NATIVE, "test")


def events(server: RFBServer) -> list:
    out = []
    while True:
        event = server.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, M.ConnectionClosed):
            return out


def feed(server: RFBServer, data: bytes, *, bytewise: bool = False) -> list:
    if not bytewise:
        server.receive_data(data)
        return events(server)
    got = []
    for i in range(len(data)):
        server.receive_data(data[i:i + 1])
        got += events(server)
    return got


def normal_server(**kw) -> RFBServer:
    server = RFBServer(640, 480, "test", **kw)
    server.receive_data(b"RFB 003.008\n\x01\x01")
    assert events(server) == [M.ClientInit(True)]
    server.data_to_send()
    return server


# ---------------------------------------------------------------- handshakes

@pytest.mark.parametrize("bytewise", [False, True])
def test_handshake_38_none(bytewise):
    server = RFBServer(640, 480, "test")
    assert server.data_to_send() == b"RFB 003.008\n"
    assert feed(server, b"RFB 003.008\n", bytewise=bytewise) == []
    assert server.data_to_send() == b"\x01\x01"  # one type: None
    assert feed(server, b"\x01", bytewise=bytewise) == []
    assert server.data_to_send() == b"\x00\x00\x00\x00"  # 3.8 sends SecurityResult even for None
    assert feed(server, b"\x00", bytewise=bytewise) == [M.ClientInit(False)]
    assert server.data_to_send() == SERVER_INIT
    assert server.state is ServerState.NORMAL and server.version == (3, 8)


def test_handshake_37_none_has_no_security_result():
    server = RFBServer(640, 480, "test")
    server.data_to_send()
    assert feed(server, b"RFB 003.007\n\x01\x01") == [M.ClientInit(True)]
    assert server.data_to_send() == b"\x01\x01" + SERVER_INIT
    assert server.version == (3, 7)


def test_handshake_33_none_server_decides():
    server = RFBServer(640, 480, "test")
    server.data_to_send()
    assert feed(server, b"RFB 003.003\n") == []
    assert server.data_to_send() == b"\x00\x00\x00\x01"  # u32 type, no list, no result
    assert feed(server, b"\x01") == [M.ClientInit(True)]
    assert server.data_to_send() == SERVER_INIT


@pytest.mark.parametrize("version,wire", [((3, 3), b"\x00\x00\x00\x02"), ((3, 7), b"\x01\x02"), ((3, 8), b"\x01\x02")])
def test_handshake_vnc_auth_good(version, wire):
    server = RFBServer(640, 480, "test", security="vnc", password="s3cret", challenge=CHALLENGE)
    server.data_to_send()
    feed(server, H.write_version(*version))
    if version == (3, 3):  # the server decided; the challenge follows at once
        assert server.data_to_send() == wire + CHALLENGE
    else:
        assert server.data_to_send() == wire
        feed(server, b"\x02")
        assert server.data_to_send() == CHALLENGE
    feed(server, vncauth.vnc_auth_response("s3cret", CHALLENGE))
    assert server.data_to_send() == b"\x00\x00\x00\x00"
    assert feed(server, b"\x01") == [M.ClientInit(True)]


def test_handshake_vnc_auth_wrong_38_gives_reason():
    server = RFBServer(640, 480, "test", security="vnc", password="s3cret", challenge=CHALLENGE)
    server.data_to_send()
    got = feed(server, b"RFB 003.008\n\x02" + vncauth.vnc_auth_response("wrong", CHALLENGE))
    assert isinstance(got[0], M.AuthenticationFailed)
    out = server.data_to_send()
    assert out.startswith(b"\x01\x02" + CHALLENGE + b"\x00\x00\x00\x01")
    (length,) = struct.unpack(">I", out[22:26])
    assert out[26:] == b"authentication failed: wrong password" and len(out[26:]) == length
    assert server.state is ServerState.CLOSED
    assert isinstance(server.next_event(), M.ConnectionClosed)
    server.receive_data(b"\x01")  # late bytes ignored, not an error
    assert isinstance(server.next_event(), M.ConnectionClosed)


@pytest.mark.parametrize("version", [(3, 3), (3, 7)])
def test_handshake_vnc_auth_wrong_before_38_has_no_reason(version):
    server = RFBServer(640, 480, "test", security="vnc", password="s3cret", challenge=CHALLENGE)
    server.data_to_send()
    feed(server, H.write_version(*version) + (b"\x02" if version == (3, 7) else b""))
    server.data_to_send()
    got = feed(server, bytes(16))
    assert isinstance(got[0], M.AuthenticationFailed)
    assert server.data_to_send() == b"\x00\x00\x00\x01"


def test_fresh_random_challenge_by_default():
    a = RFBServer(64, 64, security="vnc", password="pw")
    b = RFBServer(64, 64, security="vnc", password="pw")
    for s in (a, b):
        s.data_to_send()
        feed(s, b"RFB 003.008\n\x02")
    assert a.data_to_send()[2:] != b.data_to_send()[2:]


def test_password_not_in_repr_or_errors():
    server = RFBServer(64, 64, security="vnc", password="topsecretpw", challenge=CHALLENGE)
    assert "topsecretpw" not in repr(server)
    server.data_to_send()
    feed(server, b"RFB 003.008\n\x02" + bytes(16))
    assert "topsecretpw" not in server.data_to_send().decode("latin-1")


def test_unoffered_security_type_refused_with_reason():
    server = RFBServer(640, 480)
    server.data_to_send()
    with pytest.raises(RemoteProtocolError, match="security type 2 was not offered"):
        feed(server, b"RFB 003.008\n\x02")
    assert server.data_to_send().endswith(b"\x00\x00\x00\x01\x00\x00\x00\x1fsecurity type 2 was not offered")
    assert server.state is ServerState.ERROR
    with pytest.raises(LocalProtocolError):
        server.next_event()
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"x")


@pytest.mark.parametrize("client,agreed", [
    ((3, 3), (3, 3)), ((3, 4), (3, 3)), ((3, 5), (3, 3)), ((3, 6), (3, 3)), ((3, 7), (3, 7)),
    ((3, 8), (3, 8)), ((3, 889), (3, 8)), ((3, 14), (3, 8)), ((4, 0), (3, 8)),
])
def test_version_mapping(client, agreed):
    assert negotiate_version(*client) == agreed


def test_version_below_3_refused():
    server = RFBServer(64, 64)
    with pytest.raises(RemoteProtocolError, match="3.3 or later"):
        feed(server, b"RFB 002.000\n")


def test_constructor_validation():
    with pytest.raises(ValueError):
        RFBServer(64, 64, security="vnc")
    with pytest.raises(ValueError):
        RFBServer(64, 64, security="tls")
    with pytest.raises(ValueError):
        RFBServer(0, 64)


# ---------------------------------------------------------------- normal phase

def test_set_pixel_format_validated():
    server = normal_server()
    assert feed(server, CM.write_set_pixel_format(BGR233)) == [M.SetPixelFormat(BGR233)]
    assert server.pixel_format == BGR233
    colour_map = PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)
    with pytest.raises(RemoteProtocolError, match="colour-map"):
        feed(server, CM.write_set_pixel_format(colour_map))


def test_set_encodings_announces_fence_then_end_of_cu_once():
    server = normal_server()
    encs = [C.ENC_TIGHT, C.ENC_FENCE, C.ENC_CONTINUOUS_UPDATES]
    assert feed(server, CM.write_set_encodings(encs)) == [M.SetEncodings(tuple(encs))]
    assert server.data_to_send() == b"\xf8\x00\x00\x00\x80\x00\x00\x00\x01\x00" + b"\x96"
    assert server.supports(C.ENC_FENCE) and not server.supports(C.ENC_ZRLE)
    feed(server, CM.write_set_encodings(encs))
    assert server.data_to_send() == b""  # only the first time


def test_set_encodings_without_fence_or_cu_writes_nothing():
    server = normal_server()
    feed(server, CM.write_set_encodings([C.ENC_RAW, C.ENC_CURSOR]))
    assert server.data_to_send() == b""


def test_fence_request_answered_and_response_passed_on():
    server = normal_server()
    req = W.write_fence(C.MSG_CLIENT_FENCE, M.FENCE_REQUEST | M.FENCE_BLOCK_BEFORE | M.FENCE_SYNC_NEXT, b"id42")
    assert feed(server, req) == [M.Fence(0x80000005, b"id42")]
    assert server.data_to_send() == W.write_fence(C.MSG_SERVER_FENCE, M.FENCE_BLOCK_BEFORE | M.FENCE_SYNC_NEXT, b"id42")
    # a response to our own fence is an event, not answered again
    assert feed(server, W.write_fence(C.MSG_CLIENT_FENCE, 0, b"\0")) == [M.Fence(0, b"\0")]
    assert server.data_to_send() == b""


def test_disable_continuous_updates_sends_end_of_cu():
    server = normal_server()
    feed(server, CM.write_enable_continuous_updates(True, 0, 0, 640, 480))
    assert server.data_to_send() == b""
    got = feed(server, CM.write_enable_continuous_updates(False, 0, 0, 640, 480))
    assert got == [M.EnableContinuousUpdates(False, 0, 0, 640, 480)]
    assert server.data_to_send() == b"\x96"


def test_input_events_in_order_three_ways():
    stream = (CM.write_key_event(True, 0x61) + CM.write_pointer_event(1, 10, 20) + CM.write_client_cut_text("x")
              + CM.write_update_request(False, 0, 0, 640, 480) + CM.write_key_event(False, 0x61))
    expected = [M.KeyEvent(True, 0x61), M.PointerEvent(1, 10, 20), M.ClientCutText("x"),
                M.FramebufferUpdateRequest(False, 0, 0, 640, 480), M.KeyEvent(False, 0x61)]
    assert feed(normal_server(), stream) == expected
    assert feed(normal_server(), stream, bytewise=True) == expected
    server = normal_server()
    server.receive_data(stream + b"\x05\x00")  # a trailing partial PointerEvent stays buffered
    assert events(server) == expected


def test_send_update_header_and_bell_and_cut_text():
    server = normal_server()
    rect = SM.write_rect_header(0, 0, 1, 1, C.ENC_RAW) + b"\x01\x02\x03\x00"
    n = server.send_update([rect, rect])
    assert server.data_to_send() == b"\x00\x00\x00\x02" + rect + rect and n == 4 + 2 * len(rect)
    server.send_bell()
    server.send_server_cut_text("hé")
    assert server.data_to_send() == b"\x02" + b"\x03\x00\x00\x00\x00\x00\x00\x02h\xe9"
    server.send_update([])
    assert server.data_to_send() == b"\x00\x00\x00\x00"


def test_many_rects_use_last_rect_when_offered():
    rect = SM.write_rect_header(0, 0, 0, 0, C.ENC_RAW)
    server = normal_server()
    feed(server, CM.write_set_encodings([C.ENC_RAW, C.ENC_LAST_RECT]))
    server.send_update([rect] * 70000)
    out = server.data_to_send()
    assert out[:4] == b"\x00\x00\xff\xff" and out.endswith(SM.write_last_rect()) and len(out) == 4 + 70001 * 12


def test_many_rects_split_without_last_rect():
    rect = SM.write_rect_header(0, 0, 0, 0, C.ENC_RAW)
    server = normal_server()
    server.send_update([rect] * 70000)
    out = server.data_to_send()
    assert out[:4] == b"\x00\x00\xff\xfe"
    second = 4 + 65534 * 12
    assert out[second:second + 4] == struct.pack(">BxH", 0, 70000 - 65534)


def test_local_misuse_is_local_protocol_error():
    server = RFBServer(64, 64)
    with pytest.raises(LocalProtocolError, match="send_update in state await-version"):
        server.send_update([])
    server = normal_server()
    with pytest.raises(LocalProtocolError, match="Fence"):
        server.send_fence(0)


def test_eof_clean_and_mid_message():
    server = normal_server()
    server.receive_data(b"")
    assert isinstance(server.next_event(), M.ConnectionClosed)
    server = normal_server()
    server.receive_data(b"\x04\x01")
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a message"):
        server.next_event()
    server = RFBServer(64, 64)
    server.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after EOF"):
        server.receive_data(b"more")


def test_set_desktop_size_is_an_event():
    server = normal_server()
    msg = CM.write_set_desktop_size(800, 600, [M.Screen(0, 0, 0, 800, 600, 0)])
    assert feed(server, msg) == [M.SetDesktopSize(800, 600, (M.Screen(0, 0, 0, 800, 600, 0),))]
