"""FrameGate: readers share it, a write waits for the readers in flight and holds new ones back, and a
cancelled waiter leaves the gate usable."""
from __future__ import annotations

import asyncio

from agent.service.frame_gate import FrameGate


def test_a_write_waits_for_readers_in_flight_and_new_readers_wait_for_the_write():
    async def main() -> None:
        gate = FrameGate()
        log: list[str] = []
        reading = asyncio.Event()
        finish_read = asyncio.Event()

        async def reader(name: str, hold: asyncio.Event | None) -> None:
            async with gate:
                log.append(f"{name} in")
                reading.set()
                if hold is not None:
                    await hold.wait()
                log.append(f"{name} out")

        async def writer() -> None:
            async with gate.writing():
                log.append("write in")
                await asyncio.sleep(0.01)
                log.append("write out")

        first = asyncio.ensure_future(reader("a", finish_read))
        await reading.wait()
        write = asyncio.ensure_future(writer())
        await asyncio.sleep(0.01)
        late = asyncio.ensure_future(reader("b", None))  # arrives while the write waits: must not starve it
        await asyncio.sleep(0.01)
        assert log == ["a in"] and gate.readers == 1
        finish_read.set()
        await asyncio.wait_for(asyncio.gather(first, write, late), 2)
        assert log == ["a in", "a out", "write in", "write out", "b in", "b out"]
        assert gate.readers == 0

    asyncio.run(main())


def test_readers_share_the_gate_and_a_cancelled_writer_lets_them_go_on():
    async def main() -> None:
        gate = FrameGate()
        async with gate:
            async with gate:
                assert gate.readers == 2
                write = asyncio.ensure_future(gate.writing().__aenter__())
                await asyncio.sleep(0.01)
                write.cancel()
                await asyncio.gather(write, return_exceptions=True)
            reader_done = asyncio.ensure_future(asyncio.wait_for(gate.__aenter__(), 1))
            assert await reader_done is gate  # not held back by the writer that gave up
            await gate.__aexit__(None, None, None)
        async with gate.writing():
            assert gate.readers == 0

    asyncio.run(main())
