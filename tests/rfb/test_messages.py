"""Byte-level layout of every RFB message we read or write, against RFC 6143 / rfbproto.

Every reader is run three ways (h11 tests/test_io.py): the whole message,
every proper prefix (must ask for more bytes), and the message followed by
trailing bytes (must consume exactly the message).
"""
from __future__ import annotations

import struct
import warnings

import pytest

from agent.rfb import client_messages as CM
from agent.rfb import constants as C
from agent.rfb import handshake as H
from agent.rfb import messages as M
from agent.rfb import server_messages as SM
from agent.rfb import vncauth
from agent.rfb import wire as W
from agent.sansio import RemoteProtocolError
from agent.rfb.pixelformat import BGR233, NATIVE, RGB565_BE, PixelFormat
from agent.rfb.client_messages import read_client_message

NATIVE_BYTES = bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])


def three_ways(reader, data: bytes, expected) -> None:
    got = reader(memoryview(data))
    assert got == (expected, len(data))
    for i in range(len(data)):
        assert reader(memoryview(data[:i])) is None, f"prefix of {i} bytes was accepted"
    assert reader(memoryview(data + b"\x07trailing")) == (expected, len(data))


# ---------------------------------------------------------------- handshake

def test_protocol_version_layout():
    assert H.write_version(3, 8) == b"RFB 003.008\n"
    assert H.write_version(3, 3) == b"RFB 003.003\n"
    three_ways(H.read_version, b"RFB 003.007\n", (3, 7))
    three_ways(H.read_version, b"RFB 003.889\n", (3, 889))


@pytest.mark.parametrize("bad", [b"RFB 003.00x\n", b"RFB 003_008\n", b"RFB 003.008\r", b"HTTP/1.1 200"])
def test_protocol_version_malformed(bad):
    with pytest.raises(RemoteProtocolError):
        H.read_version(memoryview(bad))


def test_protocol_version_garbage_refused_before_twelve_bytes():
    with pytest.raises(RemoteProtocolError):
        H.read_version(memoryview(b"GET"))


def test_security_types_layout():
    assert H.write_security_types([C.SEC_NONE]) == b"\x01\x01"
    assert H.write_security_types([C.SEC_VNC_AUTH, C.SEC_NONE]) == b"\x02\x02\x01"
    three_ways(H.read_security_types, b"\x02\x02\x01", (2, 1))
    refused = H.write_security_failure("go away")
    assert refused == b"\x00\x00\x00\x00\x07go away"
    three_ways(H.read_security_types, refused, M.ConnectionClosed("go away"))


def test_security_type_33_layout():
    assert H.write_security_type_33(C.SEC_VNC_AUTH) == b"\x00\x00\x00\x02"
    three_ways(H.read_security_type_33, b"\x00\x00\x00\x01", 1)
    three_ways(H.read_security_type_33, b"\x00\x00\x00\x00\x00\x00\x00\x02no", M.ConnectionClosed("no"))


def test_security_result_layout():
    assert H.write_security_result(True) == b"\x00\x00\x00\x00"
    assert H.write_security_result(False) == b"\x00\x00\x00\x01"  # 3.3 and 3.7: no reason
    assert H.write_security_result(False, "bad") == b"\x00\x00\x00\x01\x00\x00\x00\x03bad"
    three_ways(lambda v: H.read_security_result(v, True), b"\x00\x00\x00\x00", True)
    three_ways(lambda v: H.read_security_result(v, True), b"\x00\x00\x00\x01\x00\x00\x00\x03bad",
               M.AuthenticationFailed("bad"))
    three_ways(lambda v: H.read_security_result(v, False), b"\x00\x00\x00\x01",
               M.AuthenticationFailed("authentication failed"))


def test_client_init_layout():
    assert H.write_client_init(True) == b"\x01"
    assert H.write_client_init(False) == b"\x00"
    three_ways(H.read_client_init, b"\x01", M.ClientInit(True))


def test_server_init_layout():
    data = H.write_server_init(1024, 768, NATIVE, "abc")
    assert data == b"\x04\x00\x03\x00" + NATIVE_BYTES + b"\x00\x00\x00\x03abc"
    three_ways(H.read_server_init, data, M.ServerInit(1024, 768, "abc", NATIVE))
    assert H.write_server_init(1, 1, NATIVE, "žluť")[20:24] == struct.pack(">I", len("žluť".encode()))


def test_server_init_name_length_bounded():
    data = b"\x04\x00\x03\x00" + NATIVE_BYTES + struct.pack(">I", M.MAX_NAME + 1)
    with pytest.raises(RemoteProtocolError):
        H.read_server_init(memoryview(data))


# ---------------------------------------------------------------- client messages

def test_set_pixel_format_layout():
    data = CM.write_set_pixel_format(RGB565_BE)
    assert data == b"\x00\x00\x00\x00" + bytes([16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0])
    three_ways(read_client_message, data, M.SetPixelFormat(RGB565_BE))


def test_set_encodings_layout():
    data = CM.write_set_encodings([C.ENC_RAW, C.ENC_CURSOR, C.ENC_TIGHT])
    assert data == b"\x02\x00\x00\x03" + b"\x00\x00\x00\x00" + b"\xff\xff\xff\x11" + b"\x00\x00\x00\x07"
    three_ways(read_client_message, data, M.SetEncodings((0, -239, 7)))
    three_ways(read_client_message, b"\x02\x00\x00\x00", M.SetEncodings(()))


def test_update_request_layout():
    data = CM.write_update_request(True, 1, 2, 300, 400)
    assert data == b"\x03\x01\x00\x01\x00\x02\x01\x2c\x01\x90"
    three_ways(read_client_message, data, M.FramebufferUpdateRequest(True, 1, 2, 300, 400))
    assert CM.write_update_request(False, 0, 0, 1, 1)[1] == 0


def test_update_request_clipping():
    req = M.FramebufferUpdateRequest(True, 600, 400, 1000, 1000)
    assert req.clipped(640, 480) == (600, 400, 40, 80)
    assert M.FramebufferUpdateRequest(True, 640, 0, 10, 10).clipped(640, 480) is None
    assert M.FramebufferUpdateRequest(True, 0, 0, 0, 0).clipped(640, 480) is None
    assert M.FramebufferUpdateRequest(False, 65535, 65535, 65535, 65535).clipped(640, 480) is None


def test_key_event_layout():
    data = CM.write_key_event(True, 0xFF0D)
    assert data == b"\x04\x01\x00\x00\x00\x00\xff\x0d"
    three_ways(read_client_message, data, M.KeyEvent(True, 0xFF0D))


def test_pointer_event_layout():
    data = CM.write_pointer_event(0b101, 513, 2)
    assert data == b"\x05\x05\x02\x01\x00\x02"
    three_ways(read_client_message, data, M.PointerEvent(5, 513, 2))


def test_client_cut_text_layout():
    data = CM.write_client_cut_text("héllo")
    assert data == b"\x06\x00\x00\x00\x00\x00\x00\x05h\xe9llo"  # Latin-1 on the wire
    three_ways(read_client_message, data, M.ClientCutText("héllo"))


def test_enable_continuous_updates_layout():
    data = CM.write_enable_continuous_updates(True, 0, 0, 640, 480)
    assert data == b"\x96\x01\x00\x00\x00\x00\x02\x80\x01\xe0"
    three_ways(read_client_message, data, M.EnableContinuousUpdates(True, 0, 0, 640, 480))


def test_fence_layout():
    data = W.write_fence(C.MSG_CLIENT_FENCE, M.FENCE_REQUEST | M.FENCE_BLOCK_BEFORE, b"ab")
    assert data == b"\xf8\x00\x00\x00\x80\x00\x00\x01\x02ab"
    three_ways(read_client_message, data, M.Fence(0x80000001, b"ab"))
    answer = M.fence_response(M.Fence(M.FENCE_REQUEST | M.FENCE_SYNC_NEXT | (1 << 20), b"xy"))
    assert answer == M.Fence(M.FENCE_SYNC_NEXT, b"xy")  # request bit cleared, unknown bits dropped


def test_set_desktop_size_layout():
    screens = [M.Screen(1, 0, 0, 800, 600, 0)]
    data = CM.write_set_desktop_size(800, 600, screens)
    assert data == (b"\xfb\x00\x03\x20\x02\x58\x01\x00"
                    + b"\x00\x00\x00\x01\x00\x00\x00\x00\x03\x20\x02\x58\x00\x00\x00\x00")
    three_ways(read_client_message, data, M.SetDesktopSize(800, 600, tuple(screens)))


# ---------------------------------------------------------------- server messages

def test_framebuffer_update_header_and_rect_header():
    assert SM.write_update_header(3) == b"\x00\x00\x00\x03"
    assert SM.write_update_header(M.LAST_RECT_COUNT) == b"\x00\x00\xff\xff"
    header = SM.write_rect_header(10, 20, 30, 40, C.ENC_ZRLE)
    assert header == b"\x00\x0a\x00\x14\x00\x1e\x00\x28\x00\x00\x00\x10"
    three_ways(SM.read_rect_header, header, (10, 20, 30, 40, 16))
    assert SM.write_rect_header(0, 0, 1, 1, C.ENC_CURSOR)[8:] == b"\xff\xff\xff\x11"


def test_bell_and_end_of_continuous_updates():
    assert SM.write_bell() == b"\x02"
    assert SM.write_end_of_continuous_updates() == b"\x96"


def test_server_cut_text_layout():
    data = SM.write_server_cut_text("hi")
    assert data == b"\x03\x00\x00\x00\x00\x00\x00\x02hi"
    three_ways(SM.read_server_cut_text, data, M.ServerCutText("hi"))


def test_set_colour_map_entries_is_only_read():
    # We never send it (colour-map formats are refused); a client still parses it.
    data = b"\x01\x00\x00\x05\x00\x01" + b"\xff\xff\x00\x00\x80\x00"
    three_ways(SM.read_colour_map_entries, data, M.ColourMapEntries(5, ((0xFFFF, 0, 0x8000),)))
    assert not any("colour_map" in name for module in (M, H, CM, SM, W) for name in dir(module)
                   if name.startswith("write_"))


def test_pseudo_encoding_rects():
    assert SM.write_desktop_size_rect(800, 600) == b"\x00\x00\x00\x00\x03\x20\x02\x58\xff\xff\xff\x21"
    assert SM.write_last_rect() == b"\x00" * 8 + b"\xff\xff\xff\x20"
    eds = SM.write_extended_desktop_size_rect(800, 600, reason=M.EDS_REASON_CLIENT, status=M.EDS_STATUS_PROHIBITED)
    assert eds[:12] == b"\x00\x01\x00\x01\x03\x20\x02\x58\xff\xff\xfe\xcc"  # -308
    assert eds[12:16] == b"\x01\x00\x00\x00"
    assert eds[16:] == b"\x00\x00\x00\x00\x00\x00\x00\x00\x03\x20\x02\x58\x00\x00\x00\x00"
    three_ways(SM.read_extended_desktop_size_payload, eds[12:], (M.Screen(0, 0, 0, 800, 600, 0),))


# ---------------------------------------------------------------- bounds

def test_cut_text_length_bound_refused_before_buffering():
    header = b"\x06\x00\x00\x00" + struct.pack(">I", M.MAX_CUT_TEXT + 1)
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        read_client_message(memoryview(header))
    negative = b"\x06\x00\x00\x00\xff\xff\xff\xf0"
    with pytest.raises(RemoteProtocolError, match="negative"):
        read_client_message(memoryview(negative))


def test_set_encodings_count_bound():
    with pytest.raises(RemoteProtocolError, match="SetEncodings"):
        read_client_message(memoryview(b"\x02\x00" + struct.pack(">H", M.MAX_ENCODINGS + 1)))


def test_fence_payload_bound():
    with pytest.raises(RemoteProtocolError, match="fence"):
        read_client_message(memoryview(b"\xf8\x00\x00\x00\x80\x00\x00\x00\x41"))
    with pytest.raises(ValueError):
        W.write_fence(C.MSG_SERVER_FENCE, 0, b"x" * 65)


def test_unknown_client_message_type():
    with pytest.raises(RemoteProtocolError, match="unknown client message type 7"):
        read_client_message(memoryview(b"\x07\x00"))


# ---------------------------------------------------------------- VNC authentication

# Computed with vncdotool's independent implementation (rfb.py: reverse_bits + des_encrypt),
# see test_vnc_auth_matches_vncdotool which recomputes it.
KNOWN_ANSWERS = [
    ("password", bytes(range(16)), "b866924125c8eebb9debc1db61c538e2"),
    ("Secret12345", bytes(16), "24caa5b4984f52a624caa5b4984f52a6"),
]


@pytest.mark.parametrize("password,challenge,expected", KNOWN_ANSWERS)
def test_vnc_auth_known_answers(password, challenge, expected):
    assert vncauth.vnc_auth_response(password, challenge).hex() == expected


def test_vnc_auth_bit_reversal_quirk():
    # 'p' = 0x70 = 01110000 -> 00001110 = 0x0e: the key byte DES really sees.
    assert vncauth._des_key("p") == b"\x0e" + b"\x00" * 7
    assert vncauth._des_key("password") == bytes.fromhex("0e86cecee ef64e26".replace(" ", ""))
    # Only 8 characters count, as in every VNC implementation.
    challenge = bytes(range(16))
    assert vncauth.vnc_auth_response("password", challenge) == vncauth.vnc_auth_response("password-and-more", challenge)
    assert vncauth.password_truncated("123456789") and not vncauth.password_truncated("12345678")


def test_vnc_auth_matches_vncdotool():
    rfb = pytest.importorskip("vncdotool.rfb")
    from cryptography.utils import CryptographyDeprecationWarning

    challenge = bytes.fromhex("a3a09109996eb1e0f0274b912d404115")
    for password in ("password", "Secret12345", "x", "12345678"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # vncdotool uses the old DES path
            theirs = rfb.des_encrypt(rfb._vnc_des(password), challenge)
        assert vncauth.vnc_auth_response(password, challenge) == theirs
    for password, ch, expected in KNOWN_ANSWERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            assert rfb.des_encrypt(rfb._vnc_des(password), ch).hex() == expected


def test_vnc_auth_check_response_is_exact():
    challenge = vncauth.make_challenge()
    good = vncauth.vnc_auth_response("hunter2", challenge)
    assert vncauth.check_response("hunter2", challenge, good)
    assert not vncauth.check_response("hunter3", challenge, good)
    assert not vncauth.check_response("hunter2", challenge, good[:15])
    assert not vncauth.check_response("hunter2", challenge, bytes(16))
    assert vncauth.make_challenge() != challenge


def test_pixel_format_in_set_pixel_format_roundtrip():
    for pf in (NATIVE, BGR233, RGB565_BE, PixelFormat(32, 24, True, True, 255, 255, 255, 0, 8, 16)):
        event, n = read_client_message(memoryview(CM.write_set_pixel_format(pf)))
        assert event.pixel_format == pf and n == 20
