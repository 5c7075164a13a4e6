"""AsyncRFBClient, the technician-side client a product embeds: updates, queued events, input bytes."""
from __future__ import annotations

import asyncio

import numpy as np

from agent.inputs.gate import ScopeGate
from agent.rfb import constants as C
from agent.rfb.messages import Bell
from agent.service.rfb_service import RFBService
from agent.viewer.rfb_client import AsyncRFBClient
from agent.workloads import SyntheticSource
from tests.support.pipes import RecordingInput, memory_pipe


async def test_a_stale_update_is_not_mistaken_for_the_answer_and_events_are_kept():
    source = SyntheticSource("typing", 96, 64, seed=3)
    recorder = RecordingInput()
    service = RFBService(source, input_backend=ScopeGate(recorder, scope="control"), fps=60)
    await service.start()
    (sr, sw), (cr, cw) = memory_pipe()
    task = asyncio.ensure_future(service.serve_connection(sr, sw))
    client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
    try:
        first = await client.update(incremental=False)
        assert first.rects and client.framebuffer.shape == (64, 96, 4)
        service.bell()
        assert await client.wait_for(Bell) == Bell()
        await client.key(0x41)  # a tap: press and release
        await client.pointer(10, 20, 1)
        await client.update(incremental=False)  # round trip: the input reached the service before this
        assert recorder.calls == [("key", 0x41, True), ("key", 0x41, False), ("pointer", 10, 20, 1)]
        assert client.bytes_sent > 0 and client.bytes_received > first.rects[0][2] * first.rects[0][3]
        assert not np.all(client.framebuffer == 0)
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()
