"""RFBService: viewers over plain stream pairs, capture pacing, input through the gate, failures."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agent.commands.rfb import parse_loopback_listen
from agent.errors import CaptureError, UsageError
from agent.inputs.gate import ScopeGate
from agent.rfb import constants as C
from agent.rfb.decode import quantize
from agent.rfb.messages import Bell, ServerCutText
from agent.rfb.pixelformat import BGR233, NATIVE
from agent.service.rfb_service import RFBService
from agent.viewer.rfb_client import AsyncRFBClient, open_rfb
from agent.workloads.synthetic import SyntheticSource

ROOT = Path(__file__).resolve().parents[2]
LOSSLESS = [C.ENC_ZRLE, C.ENC_HEXTILE, C.ENC_RAW, C.ENC_COPYRECT, C.ENC_DESKTOP_SIZE]


from tests.support.pipes import RecordingInput, memory_pipe, wait_until


def test_service_over_a_plain_stream_pair():
    async def main() -> None:
        source = SyntheticSource("idle", 160, 120, seed=1)
        service = RFBService(source, fps=30)
        seen = []
        service.on_update = lambda viewer, stats: seen.append((viewer.peer, stats.updates_sent))
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=LOSSLESS)
        await client.update(incremental=False, timeout=5)
        assert (client.framebuffer[..., :3] == service._capture.frame[..., :3]).all()
        assert len(np.unique(client.framebuffer.reshape(-1, 4), axis=0)) > 10  # a real desktop, not a blank
        assert [v.peer for v in service.viewers] == ["memory-pipe"]
        assert seen and seen[-1] == ("memory-pipe", service.viewers[0].stats.updates_sent)
        assert service.viewers[0].stats.bytes_sent > 0 and service.viewers[0].stats.last_update_time
        await client.close()
        await asyncio.wait_for(task, 5)
        assert service.viewers == []
        await service.close()

    asyncio.run(main())


def test_several_viewers_each_with_its_own_format_and_encodings():
    async def main() -> None:
        source = SyntheticSource("typing", 200, 150, seed=2)
        service = RFBService(source, fps=30)
        await service.start()
        server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        a = await open_rfb("127.0.0.1", port, encodings=[C.ENC_ZRLE, C.ENC_COPYRECT])
        b = await open_rfb("127.0.0.1", port, encodings=[C.ENC_HEXTILE], pixel_format=BGR233)
        c = await open_rfb("127.0.0.1", port, encodings=[C.ENC_TIGHT, C.ENC_RAW], version=(3, 3))
        await wait_until(lambda: len(service.viewers) == 3)
        for client in (a, b, c):
            await client.update(incremental=False)
        for _ in range(5):
            for client in (a, b, c):
                await client.update()
        assert {v.server.pixel_format for v in service.viewers} == {NATIVE, BGR233}
        for client in (a, b, c):
            assert client.framebuffer.shape == (150, 200, 4) and client.updates_received == 6
            assert client.bytes_received > 0 and client.bytes_sent > 0
        await a.close()
        await wait_until(lambda: len(service.viewers) == 2)
        await b.update()  # the others carry on
        server.close()
        await service.close()
        await b.close()
        await c.close()

    asyncio.run(main())


def test_viewer_converges_to_the_source_once_it_stops_changing():
    async def main() -> None:
        source = SyntheticSource("idle", 160, 120, seed=4)
        service = RFBService(source, fps=60)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_TIGHT], pixel_format=BGR233)
        await client.update(incremental=False)
        assert (client.framebuffer == quantize(service._capture.frame, BGR233)).all()
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()

    asyncio.run(main())


def test_input_passes_only_while_the_scope_gate_allows_and_is_released_on_leave():
    async def main() -> None:
        recorder = RecordingInput()
        gate = ScopeGate(recorder, scope="view")
        service = RFBService(SyntheticSource("idle", 64, 48), input_backend=gate)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await client.key(0x61)
        await client.pointer(3, 4, 1)
        await client.update(incremental=False)  # round trip: the input was processed before this answer
        assert recorder.calls == []
        gate.set_scope("control")  # the customer granted control
        await client.key(0x62)
        await client.pointer(5, 6, 0)
        await client.update(incremental=False)
        assert recorder.calls == [("key", 0x62, True), ("key", 0x62, False), ("pointer", 5, 6, 0)]
        await client.close()
        await asyncio.wait_for(task, 5)
        assert recorder.calls[-1] == ("release_all",)
        await service.close()

    asyncio.run(main())


def test_bell_cut_text_both_ways():
    async def main() -> None:
        service = RFBService(SyntheticSource("idle", 64, 48))
        received = []
        service.on_cut_text = lambda viewer, text: received.append((viewer.peer, text))
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await client.update(incremental=False)
        service.bell()
        service.send_cut_text("zażółć")  # ó is Latin-1; ż, ł, ć are not and become '?'
        assert await client.wait_for(Bell) == Bell()
        assert await client.wait_for(ServerCutText) == ServerCutText("za?ó??")
        await client.cut_text("from the technician")
        await client.update(incremental=False)
        assert received == [("memory-pipe", "from the technician")]
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()

    asyncio.run(main())


def test_adaptive_capture_rate_backs_off_when_idle():
    async def rate(workload: str) -> int:
        service = RFBService(SyntheticSource(workload, 64, 48), fps=40)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await wait_until(lambda: service.frames_captured > 0)
        start = service.frames_captured
        await asyncio.sleep(1.0)
        frames = service.frames_captured - start
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()
        return frames

    async def main() -> None:
        idle, busy = await rate("idle"), await rate("typing")
        assert idle <= 10, f"idle screen polled {idle} times in 1 s"
        assert busy >= 2 * idle, f"changing screen polled only {busy} times vs {idle} idle"

    asyncio.run(main())


def test_no_capture_without_viewers():
    async def main() -> None:
        service = RFBService(SyntheticSource("typing", 64, 48), fps=30)
        await service.start()
        await asyncio.sleep(0.3)
        assert service.frames_captured == 0
        await service.close()

    asyncio.run(main())


class _DyingSource(SyntheticSource):
    def __init__(self) -> None:
        super().__init__("typing", 64, 48)
        self.grabs = 0

    def grab(self) -> np.ndarray:
        self.grabs += 1
        if self.grabs > 3:
            raise CaptureError("display went away")
        return super().grab()


def test_capture_failure_closes_viewers_and_is_reported():
    async def main() -> None:
        service = RFBService(_DyingSource(), fps=60)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await asyncio.wait_for(task, 5)
        assert isinstance(service.failure, CaptureError)
        await client.close()
        await service.close()

    asyncio.run(main())


def test_service_argument_checks():
    with pytest.raises(ValueError):
        RFBService(SyntheticSource("idle", 8, 8), fps=0)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="one_frame_min_bytes"):
            RFBService(SyntheticSource("idle", 8, 8), one_frame_min_bytes=bad)
    for bad in (-0.5, 500):
        with pytest.raises(ValueError, match="churn_fps"):
            RFBService(SyntheticSource("idle", 8, 8), churn_fps=bad)

    async def main() -> None:
        service = RFBService(SyntheticSource("idle", 8, 8))
        (sr, sw), _ = memory_pipe()
        with pytest.raises(ValueError, match="password"):
            await service.serve_connection(sr, sw, security="vnc")

    asyncio.run(main())


# ---------------------------------------------------------------- loopback check

@pytest.mark.parametrize("value,expected", [
    ("127.0.0.1:5900", ("127.0.0.1", 5900)), ("127.1.2.3:0", ("127.1.2.3", 0)),
    ("localhost:5901", ("localhost", 5901)), ("[::1]:5902", ("::1", 5902)),
])
def test_loopback_addresses_accepted(value, expected):
    assert parse_loopback_listen(value) == expected


@pytest.mark.parametrize("value", ["0.0.0.0:5900", "192.168.1.10:5900", "8.8.8.8:1", "[::]:5900", "5900",
                                   "127.0.0.1:99999", "127.0.0.1:", ":5900", "no.such.host.invalid:5900"])
def test_other_addresses_refused(value):
    with pytest.raises(UsageError):
        parse_loopback_listen(value)


# ---------------------------------------------------------------- the command



class _Wall(SyntheticSource):
    """A screen that shows one solid colour, changed by the test while nobody is watching."""

    def __init__(self) -> None:
        super().__init__("idle", 64, 48)
        self.colour = 10

    def grab(self) -> np.ndarray:
        return np.full((48, 64, 4), self.colour, np.uint8)

    def damaged(self) -> bool:  # a damage hint that says "nothing drawn": only a forced grab looks
        return False


def test_a_client_arriving_after_an_idle_spell_first_sees_the_screen_as_it_is_now():
    async def main() -> None:
        source = _Wall()
        service = RFBService(source, fps=60)
        await service.start()
        for colour in (10, 200):
            source.colour = colour  # changed while no client was attached: the loop was asleep
            (sr, sw), (cr, cw) = memory_pipe()
            task = asyncio.ensure_future(service.serve_connection(sr, sw))
            client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
            await client.update(incremental=False)
            assert (client.framebuffer[..., :3] == colour).all(), colour
            await client.close()
            await asyncio.wait_for(task, 5)
            await wait_until(lambda: not service.viewers)
        await service.close()

    asyncio.run(main())
