"""The sans-IO RFBClient: handshakes against scripted servers and our own, every server message,
pseudo-encodings, and the bytes it writes."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from agent.rfb import client_messages as CM
from agent.rfb import constants as C
from agent.rfb import handshake as H
from agent.rfb import messages as M
from agent.rfb import server_messages as SM
from agent.rfb import vncauth
from agent.rfb import wire as W
from agent.rfb.client import ClientState, RFBClient
from agent.sansio import LocalProtocolError, RemoteProtocolError
from agent.rfb.pixelformat import BGR233, NATIVE, RGB565_LE
from agent.rfb.server import NEED_DATA, RFBServer

from tests.support.rfb_links import connected_pair, drain_events, psnr, pump  # noqa: E402,F401


def native_raw_rect(x: int, y: int, pixels: np.ndarray) -> bytes:
    h, w = pixels.shape[:2]
    return SM.write_rect_header(x, y, w, h, C.ENC_RAW) + np.ascontiguousarray(pixels).tobytes()


def scripted_server_init(width: int = 4, height: int = 2, name: str = "scr") -> bytes:
    return H.write_server_init(width, height, NATIVE, name)


# ---------------------------------------------------------------- handshakes

@pytest.mark.parametrize("version", [(3, 3), (3, 7), (3, 8)])
@pytest.mark.parametrize("chunk", [None, 1])
def test_handshake_with_our_server(version, chunk):
    server = RFBServer(64, 48, "pair")
    client = RFBClient(version=version, encodings=[C.ENC_RAW])
    server_events, client_events = pump(server, client, chunk=chunk)
    assert server.version == version == client.version
    assert client_events[0] == M.ServerInit(64, 48, "pair", NATIVE)
    assert server_events == [M.ClientInit(True), M.SetEncodings((0,))]
    assert client.framebuffer.shape == (48, 64, 4) and (client.framebuffer[..., 3] == 255).all()


@pytest.mark.parametrize("version", [(3, 3), (3, 7), (3, 8)])
def test_vnc_auth_with_our_server(version):
    server = RFBServer(64, 48, security="vnc", password="pa55word")
    client = RFBClient(version=version, password="pa55word")
    _, events = pump(server, client)
    assert isinstance(events[0], M.ServerInit) and client.security_type == C.SEC_VNC_AUTH


def test_vnc_auth_wrong_password_reason_38():
    server = RFBServer(64, 48, security="vnc", password="right")
    client = RFBClient(password="wrong")
    server_events, client_events = pump(server, client)
    assert client_events == [M.AuthenticationFailed("authentication failed: wrong password"),
                             M.ConnectionClosed("authentication failed: wrong password")]
    assert client.state is ClientState.CLOSED
    assert isinstance(server_events[0], M.AuthenticationFailed)


def test_scripted_38_none_bytes():
    client = RFBClient(encodings=None)
    client.receive_data(b"RFB 003.008\n")
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == b"RFB 003.008\n"
    client.receive_data(b"\x02\x02\x01")  # VNC auth and None offered; no password -> None
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == b"\x01"
    client.receive_data(b"\x00\x00\x00\x00")
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == b"\x01"  # ClientInit, shared
    client.receive_data(scripted_server_init())
    assert client.next_event() == M.ServerInit(4, 2, "scr", NATIVE)
    assert client.data_to_send() == b""  # no pixel format or encodings asked for


def test_scripted_33_vnc_auth_bytes():
    client = RFBClient(password="password", encodings=[C.ENC_RAW], pixel_format=RGB565_LE)
    challenge = bytes(range(16))
    client.receive_data(b"RFB 003.003\n" + b"\x00\x00\x00\x02" + challenge)
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == b"RFB 003.003\n" + bytes.fromhex("b866924125c8eebb9debc1db61c538e2")
    client.receive_data(b"\x00\x00\x00\x00" + scripted_server_init())
    assert isinstance(client.next_event(), M.ServerInit)
    assert client.data_to_send() == b"\x01" + CM.write_set_pixel_format(RGB565_LE) + CM.write_set_encodings([0])
    assert client.pixel_format == RGB565_LE


def test_client_answers_lower_version_of_newer_server():
    client = RFBClient(version=(3, 7))
    client.receive_data(b"RFB 003.008\n")
    client.next_event()
    assert client.data_to_send() == b"RFB 003.007\n"
    client = RFBClient()
    client.receive_data(b"RFB 003.889\n")
    client.next_event()
    assert client.data_to_send() == b"RFB 003.008\n"


def test_server_refusal_reason_is_reported():
    client = RFBClient()
    client.receive_data(b"RFB 003.008\n" + H.write_security_failure("too many connections"))
    event = client.next_event()
    assert isinstance(event, M.ConnectionClosed) and "too many connections" in event.reason


def test_password_required_but_missing():
    client = RFBClient()
    client.receive_data(b"RFB 003.008\n\x01\x02")
    assert isinstance(client.next_event(), M.AuthenticationFailed)
    assert client.state is ClientState.CLOSED


def test_unsupported_security_types():
    client = RFBClient()
    client.receive_data(b"RFB 003.008\n\x02\x10\x13")  # Tight, VeNCrypt
    with pytest.raises(RemoteProtocolError, match="no security type we support"):
        client.next_event()


def test_password_not_in_repr():
    client = RFBClient(password="hunter2hunter")
    assert "hunter2" not in repr(client)


# ---------------------------------------------------------------- server messages

def test_raw_update_decoded_three_ways():
    server, client, _, _ = connected_pair(4, 2, encodings=[C.ENC_RAW])
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    msg = SM.write_update_header(1) + native_raw_rect(1, 0, pixels)
    expected = pixels.copy()
    expected[..., 3] = 255
    for chunk in (None, 1):
        client2 = RFBClient(encodings=[C.ENC_RAW])
        pump(RFBServer(4, 2), client2)
        step = chunk or len(msg)
        events = []
        for i in range(0, len(msg), step):
            client2.receive_data(msg[i:i + step])
            events += drain_events(client2)
        assert events == [M.FramebufferUpdate([(1, 0, 3, 2, C.ENC_RAW)], len(msg))]
        assert (client2.framebuffer[:, 1:] == expected).all()
        assert (client2.framebuffer[:, 0, :3] == 0).all()
    client.receive_data(msg + b"\x02")  # trailing Bell stays for the next event
    assert isinstance(client.next_event(), M.FramebufferUpdate)
    assert client.next_event() == M.Bell()


def test_copyrect_update():
    _, client, _, _ = connected_pair(4, 2, encodings=[C.ENC_COPYRECT, C.ENC_RAW])
    pixels = np.full((1, 1, 4), 200, np.uint8)
    client.receive_data(SM.write_update_header(2) + native_raw_rect(0, 0, pixels)
                        + SM.write_rect_header(3, 1, 1, 1, C.ENC_COPYRECT) + struct.pack(">HH", 0, 0))
    assert isinstance(client.next_event(), M.FramebufferUpdate)
    assert (client.framebuffer[1, 3, :3] == 200).all()


def test_empty_update_and_server_messages():
    _, client, _, _ = connected_pair(encodings=[C.ENC_RAW, C.ENC_FENCE])
    client.receive_data(SM.write_update_header(0) + SM.write_bell() + SM.write_server_cut_text("clip")
                        + SM.write_end_of_continuous_updates()
                        + W.write_fence(C.MSG_SERVER_FENCE, M.FENCE_REQUEST | M.FENCE_BLOCK_AFTER, b"p"))
    assert drain_events(client) == [M.FramebufferUpdate([], 4), M.Bell(), M.ServerCutText("clip"),
                                    M.EndOfContinuousUpdates(), M.Fence(0x80000002, b"p")]
    assert client.data_to_send() == W.write_fence(C.MSG_CLIENT_FENCE, M.FENCE_BLOCK_AFTER, b"p")


def test_desktop_size_resizes_framebuffer():
    _, client, _, _ = connected_pair(64, 48, encodings=[C.ENC_RAW, C.ENC_DESKTOP_SIZE])
    client.framebuffer[0, 0, :3] = 7
    client.receive_data(SM.write_update_header(1) + SM.write_desktop_size_rect(80, 20))
    assert drain_events(client) == [M.DesktopResized(80, 20), M.FramebufferUpdate([(0, 0, 80, 20, -223)], 16)]
    assert client.framebuffer.shape == (20, 80, 4) and (client.width, client.height) == (80, 20)
    assert (client.framebuffer[0, 0, :3] == 7).all() and (client.framebuffer[..., 3] == 255).all()


def test_extended_desktop_size_and_refusal():
    _, client, _, _ = connected_pair(64, 48, encodings=[C.ENC_RAW, C.ENC_EXTENDED_DESKTOP_SIZE])
    client.receive_data(SM.write_update_header(1) + SM.write_extended_desktop_size_rect(100, 50))
    events = drain_events(client)
    assert events[0] == M.DesktopResized(100, 50, 0, 0, (M.Screen(0, 0, 0, 100, 50, 0),))
    assert client.framebuffer.shape == (50, 100, 4)
    client.receive_data(SM.write_update_header(1) + SM.write_extended_desktop_size_rect(
        100, 50, reason=M.EDS_REASON_CLIENT, status=M.EDS_STATUS_PROHIBITED))
    assert drain_events(client)[0].status == M.EDS_STATUS_PROHIBITED


def test_last_rect_ends_update():
    _, client, _, _ = connected_pair(4, 2, encodings=[C.ENC_RAW, C.ENC_LAST_RECT])
    pixels = np.zeros((1, 1, 4), np.uint8)
    client.receive_data(SM.write_update_header(M.LAST_RECT_COUNT) + native_raw_rect(0, 0, pixels)
                        + native_raw_rect(1, 1, pixels) + SM.write_last_rect() + SM.write_bell())
    update = client.next_event()
    assert isinstance(update, M.FramebufferUpdate) and len(update.rects) == 2
    assert client.next_event() == M.Bell()


def test_cursor_pseudo_encoding():
    _, client, _, _ = connected_pair(4, 2, encodings=[C.ENC_RAW, C.ENC_CURSOR])
    pixels = np.array([[[10, 20, 30, 0], [40, 50, 60, 0]], [[70, 80, 90, 0], [1, 2, 3, 0]]], np.uint8)
    mask = bytes([0b10000000, 0b11000000])
    client.receive_data(SM.write_update_header(1) + SM.write_rect_header(1, 0, 2, 2, C.ENC_CURSOR)
                        + pixels.tobytes() + mask)
    cursor = client.next_event()
    assert isinstance(cursor, M.CursorChanged) and (cursor.hot_x, cursor.hot_y) == (1, 0)
    assert cursor.pixels.shape == (2, 2, 4)
    assert list(cursor.pixels[..., 3].ravel()) == [255, 0, 255, 255]
    assert (cursor.pixels[0, 0, :3] == [10, 20, 30]).all()
    assert isinstance(client.next_event(), M.FramebufferUpdate)


def test_rect_outside_framebuffer_or_not_offered():
    _, client, _, _ = connected_pair(4, 2, encodings=[C.ENC_RAW])
    client.receive_data(SM.write_update_header(1) + SM.write_rect_header(3, 0, 2, 1, C.ENC_RAW))
    with pytest.raises(RemoteProtocolError, match="outside"):
        client.next_event()
    assert client.state is ClientState.ERROR
    _, client, _, _ = connected_pair(4, 2, encodings=[C.ENC_RAW])
    client.receive_data(SM.write_update_header(1) + SM.write_rect_header(0, 0, 1, 1, C.ENC_ZRLE))
    with pytest.raises(RemoteProtocolError, match="did not offer"):
        client.next_event()


def test_unknown_server_message_and_eof_mid_update():
    _, client, _, _ = connected_pair()
    client.receive_data(b"\x09")
    with pytest.raises(RemoteProtocolError, match="unknown server message type 9"):
        client.next_event()
    _, client, _, _ = connected_pair(encodings=[C.ENC_RAW])
    client.receive_data(SM.write_update_header(2))
    assert client.next_event() is NEED_DATA
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle"):
        client.next_event()


# ---------------------------------------------------------------- what the client writes

def test_client_message_bytes():
    server, client, _, _ = connected_pair(64, 48, encodings=[C.ENC_RAW, C.ENC_CONTINUOUS_UPDATES])
    client.request_update(False)
    client.request_update(True, (1, 2, 3, 4))
    client.key_event(0xFF0D, True)
    client.pointer_event(5, 6, 1)
    client.cut_text("x")
    client.enable_continuous_updates(True)
    client.send_fence(M.FENCE_REQUEST, b"f")
    client.set_pixel_format(BGR233)
    client.set_desktop_size(80, 60)
    expected = (CM.write_update_request(False, 0, 0, 64, 48) + CM.write_update_request(True, 1, 2, 3, 4)
                + CM.write_key_event(True, 0xFF0D) + CM.write_pointer_event(1, 5, 6) + CM.write_client_cut_text("x")
                + CM.write_enable_continuous_updates(True, 0, 0, 64, 48)
                + W.write_fence(C.MSG_CLIENT_FENCE, M.FENCE_REQUEST, b"f") + CM.write_set_pixel_format(BGR233)
                + CM.write_set_desktop_size(80, 60, [M.Screen(0, 0, 0, 80, 60, 0)]))
    data = client.data_to_send()
    assert data == expected
    server.receive_data(data)
    assert len(drain_events(server)) == 9


def test_local_misuse():
    client = RFBClient()
    with pytest.raises(LocalProtocolError, match="request_update in state await-version"):
        client.request_update()
    _, client, _, _ = connected_pair(encodings=[C.ENC_RAW])
    with pytest.raises(LocalProtocolError, match="ContinuousUpdates"):
        client.enable_continuous_updates()
    with pytest.raises(ValueError):
        RFBClient(version=(3, 5))


def test_vnc_response_is_des_of_challenge():
    client = RFBClient(password="abc")
    challenge = bytes(range(32, 48))
    client.receive_data(b"RFB 003.008\n\x01\x02" + challenge)
    client.next_event()
    assert client.data_to_send() == b"RFB 003.008\n\x02" + vncauth.vnc_auth_response("abc", challenge)


def test_absurd_framebuffer_size_refused_not_allocated():
    client = RFBClient()
    client.receive_data(b"RFB 003.008\n\x01\x01\x00\x00\x00\x00" + H.write_server_init(65535, 65535, NATIVE, "x"))
    with pytest.raises(RemoteProtocolError, match="exceeds our limit"):
        drain_events(client)
    _, client, _, _ = connected_pair(encodings=[C.ENC_RAW, C.ENC_DESKTOP_SIZE])
    client.receive_data(SM.write_update_header(1) + SM.write_desktop_size_rect(60000, 60000))
    with pytest.raises(RemoteProtocolError, match="exceeds our limit"):
        drain_events(client)
