"""Malformed input: the parsers either produce events or raise RemoteProtocolError, nothing else;
the asyncio service closes the offending viewer with a logged reason and keeps serving the others."""
from __future__ import annotations

import asyncio
import logging
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.rfb import client_messages as CM
from agent.rfb import constants as C
from agent.rfb import handshake as H
from agent.rfb import messages as M
from agent.rfb import server_messages as SM
from agent.sansio import RemoteProtocolError
from agent.rfb.pixelformat import NATIVE as NATIVE_PF
from agent.rfb.pixelformat import PixelFormat
from agent.rfb.server import NEED_DATA, RFBServer

HANDSHAKE_38 = b"RFB 003.008\n\x01\x01"


def drain(conn) -> int:
    n = 0
    while True:
        event = conn.next_event()
        if event is NEED_DATA or isinstance(event, M.ConnectionClosed):
            return n
        n += 1


def normal_server(**kw) -> RFBServer:
    server = RFBServer(320, 240, "fuzz", **kw)
    server.receive_data(HANDSHAKE_38)
    assert isinstance(server.next_event(), M.ClientInit)
    return server


# ---------------------------------------------------------------- fuzzing invariant

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from([b"", b"RFB 003.008\n", b"RFB 003.003\n", b"RFB 003.008\n\x01", HANDSHAKE_38]),
       chunks=st.lists(st.binary(max_size=64), max_size=8), eof=st.booleans())
def test_server_parser_only_events_or_remote_protocol_error(prefix, chunks, eof):
    server = RFBServer(320, 240, "fuzz")
    try:
        for chunk in [c for c in [prefix] + chunks if c] + ([b""] if eof else []):
            server.receive_data(chunk)
            drain(server)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=40), msg_type=st.sampled_from([0, 2, 3, 4, 5, 6, 150, 248, 251, 1, 7, 255]))
def test_server_normal_phase_fuzz_by_message_type(body, msg_type):
    server = normal_server()
    try:
        server.receive_data(bytes([msg_type]) + body)
        drain(server)
        server.receive_data(b"")
        drain(server)
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_server_vnc_auth_phase_fuzz(data):
    server = RFBServer(64, 64, security="vnc", password="pw")
    try:
        server.receive_data(b"RFB 003.008\n\x02" + data)
        drain(server)
    except RemoteProtocolError:
        pass


# ---------------------------------------------------------------- specific cases, sans-IO

@pytest.mark.parametrize("data,reason", [
    (b"\x07", "unknown client message type 7"),
    (b"\x02\x00\xff\xff", "SetEncodings lists 65535 encodings"),
    (b"\x06\x00\x00\x00\x7f\xff\xff\xff", "ClientCutText of 2147483647 bytes exceeds"),
    (CM.write_set_pixel_format(PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)), "colour-map"),
    (CM.write_set_pixel_format(PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0)), "bits-per-pixel"),
    (CM.write_set_pixel_format(PixelFormat(16, 16, False, True, 31, 63, 31, 8, 5, 0)), "overlaps"),
    (CM.write_set_pixel_format(PixelFormat(16, 16, False, True, 30, 63, 31, 11, 5, 0)), "2^n - 1"),
    (b"\xf8\x00\x00\x00\x00\x00\x00\x00\xff", "fence payload of 255 bytes"),
])
def test_malformed_messages_give_clear_reasons(data, reason):
    server = normal_server()
    server.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=reason.replace("^", r"\^")):
        drain(server)


def test_truncated_message_then_eof():
    server = normal_server()
    server.receive_data(CM.write_set_encodings([0, 1, 2])[:-3])
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a message"):
        server.next_event()


def test_claimed_length_does_not_allocate():
    """A header claiming a 1 MiB cut text buffers only what arrived; a bigger claim fails at once."""
    server = normal_server()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        server.receive_data(b"\x06\x00\x00\x00" + struct.pack(">I", M.MAX_CUT_TEXT) + b"abc")
        assert server.next_event() is NEED_DATA
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024
    server = normal_server()
    server.receive_data(b"\x06\x00\x00\x00" + struct.pack(">I", 0xFFFFFFF))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_requests_outside_the_screen_are_plain_events():
    server = normal_server()
    server.receive_data(CM.write_update_request(True, 60000, 60000, 65535, 65535))
    event = server.next_event()
    assert isinstance(event, M.FramebufferUpdateRequest) and event.clipped(320, 240) is None


# ---------------------------------------------------------------- the asyncio service

BAD_INPUTS = {
    "unknown-type": (b"\x07\x00\x00\x00", "unknown client message type 7"),
    "truncated-then-eof": (CM.write_set_encodings([0, 1, 2])[:-2], "middle of a message"),
    "huge-cut-text": (b"\x06\x00\x00\x00\x7f\xff\xff\xff", "ClientCutText of 2147483647 bytes"),
    "huge-set-encodings": (b"\x02\x00\xff\xff", "SetEncodings lists 65535"),
    "invalid-pixel-format": (CM.write_set_pixel_format(PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0)),
                             "bits-per-pixel"),
    "colour-map": (CM.write_set_pixel_format(PixelFormat(8, 8, False, False, 0, 0, 0, 0, 0, 0)), "colour-map"),
    "bad-fence": (b"\xf8\x00\x00\x00\x80\x00\x00\x00\xc8", "fence payload"),
}


async def _raw_viewer(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven viewer that completes a 3.8 None handshake."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await reader.readexactly(12) == b"RFB 003.008\n"
    writer.write(b"RFB 003.008\n")
    assert await reader.readexactly(2) == b"\x01\x01"
    writer.write(b"\x01")
    assert await reader.readexactly(4) == b"\x00\x00\x00\x00"
    writer.write(b"\x01")
    init = await reader.readexactly(24)
    await reader.readexactly(struct.unpack(">I", init[20:24])[0])
    return reader, writer


async def _wait_closed_by_server(reader: asyncio.StreamReader) -> None:
    async def until_eof() -> None:
        while await reader.read(65536):
            pass

    await asyncio.wait_for(until_eof(), 5)


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_viewer_closed_with_logged_reason_others_unaffected(name, caplog):
    from agent.workloads.synthetic import SyntheticSource
    from agent.viewer.rfb_client import open_rfb
    from agent.service.rfb_service import RFBService

    data, reason = BAD_INPUTS[name]
    caplog.set_level(logging.INFO, logger="agent.service.rfb_service")

    async def main() -> None:
        service = RFBService(SyntheticSource("typing", 160, 120, seed=5), fps=30)
        await service.start()
        server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        good = await open_rfb("127.0.0.1", port, encodings=[C.ENC_ZRLE, C.ENC_RAW])
        await good.update(incremental=False)
        reader, writer = await _raw_viewer(port)
        writer.write(data)
        if name == "truncated-then-eof":
            writer.write_eof()
        await writer.drain()
        await _wait_closed_by_server(reader)
        writer.close()
        for _ in range(3):
            await good.update(timeout=5)  # the other viewer is still served
        assert len(service.viewers) == 1
        await good.close()
        server.close()
        await service.close()

    asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("closing viewer" in m and reason in m for m in warnings), warnings


def test_handshake_garbage_and_silence(caplog, monkeypatch):
    from agent.workloads.synthetic import SyntheticSource
    from agent.service import rfb_service as serve
    from agent.viewer.rfb_client import open_rfb

    monkeypatch.setattr(serve, "HANDSHAKE_TIMEOUT", 0.5)
    caplog.set_level(logging.INFO, logger="agent.service.rfb_service")

    async def main() -> None:
        service = serve.RFBService(SyntheticSource("idle", 64, 48), fps=30)
        await service.start()
        server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await _wait_closed_by_server(reader)
        writer.close()
        silent_reader, silent_writer = await asyncio.open_connection("127.0.0.1", port)
        await _wait_closed_by_server(silent_reader)  # closed after the handshake timeout
        silent_writer.close()
        good = await open_rfb("127.0.0.1", port, encodings=[C.ENC_RAW])
        update = await good.update(incremental=False)
        assert update.rects
        empty = await good.update(region=(5000, 5000, 10, 10))  # outside the screen: answered, not fatal
        assert empty.rects == []
        await good.close()
        server.close()
        await service.close()

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("not an RFB protocol version" in m for m in messages), messages
    assert any("handshake not completed" in m for m in messages), messages


# ---------------------------------------------------------------- the client parser too

@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=120), msg_type=st.sampled_from([0, 1, 2, 3, 150, 248, 9]))
def test_client_parser_only_events_or_remote_protocol_error(body, msg_type):
    from agent.rfb.client import RFBClient

    client = RFBClient(encodings=[C.ENC_RAW, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_ZRLE, C.ENC_TIGHT,
                                  C.ENC_CURSOR, C.ENC_DESKTOP_SIZE, C.ENC_EXTENDED_DESKTOP_SIZE, C.ENC_LAST_RECT])
    client.receive_data(b"RFB 003.008\n\x01\x01\x00\x00\x00\x00" + H.write_server_init(32, 16, NATIVE_PF, "f"))
    drain(client)
    try:
        client.receive_data(bytes([msg_type]) + body)
        drain(client)
        client.receive_data(b"")
        drain(client)
    except RemoteProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(enc=st.sampled_from([C.ENC_RAW, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_ZRLE, C.ENC_TIGHT,
                            C.ENC_CURSOR, C.ENC_EXTENDED_DESKTOP_SIZE]),
       x=st.integers(0, 40), y=st.integers(0, 20), w=st.integers(0, 40), h=st.integers(0, 20),
       payload=st.binary(max_size=300), pf=st.sampled_from(["native", "bgr233", "rgb565be"]))
def test_client_rectangle_fuzz_only_events_or_remote_protocol_error(enc, x, y, w, h, payload, pf):
    from agent.rfb.client import RFBClient
    from agent.rfb.pixelformat import BGR233, RGB565_BE

    fmt = {"native": None, "bgr233": BGR233, "rgb565be": RGB565_BE}[pf]
    client = RFBClient(pixel_format=fmt, encodings=[C.ENC_RAW, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_HEXTILE,
                                                    C.ENC_ZRLE, C.ENC_TIGHT, C.ENC_CURSOR,
                                                    C.ENC_EXTENDED_DESKTOP_SIZE])
    client.receive_data(b"RFB 003.008\n\x01\x01\x00\x00\x00\x00" + H.write_server_init(32, 16, NATIVE_PF, "f"))
    drain(client)
    try:
        client.receive_data(SM.write_update_header(1) + SM.write_rect_header(x, y, w, h, enc) + payload)
        drain(client)
        client.receive_data(b"")
        drain(client)
    except RemoteProtocolError:
        pass


def test_viewer_dying_mid_update_does_not_disturb_others(caplog):
    import socket

    from agent.workloads.synthetic import SyntheticSource
    from agent.viewer.rfb_client import open_rfb
    from agent.service.rfb_service import RFBService

    caplog.set_level(logging.INFO, logger="agent.service.rfb_service")

    async def main() -> None:
        service = RFBService(SyntheticSource("video", 640, 480, seed=1), fps=30)
        await service.start()
        server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        good = await open_rfb("127.0.0.1", port, encodings=[C.ENC_ZRLE])
        await good.update(incremental=False)
        for _ in range(3):
            reader, writer = await _raw_viewer(port)
            writer.write(CM.write_set_encodings([C.ENC_RAW]) + CM.write_update_request(False, 0, 0, 640, 480))
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST while the server is writing a 1.2 MB update
        await wait_for_viewers(service, 1)
        for _ in range(3):
            await good.update(timeout=5)
        await good.close()
        server.close()
        await service.close()

    async def wait_for_viewers(service, n: int) -> None:
        for _ in range(500):
            if len(service.viewers) == n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(service.viewers)} viewers left, expected {n}")

    asyncio.run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
