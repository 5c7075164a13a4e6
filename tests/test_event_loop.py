"""agent.commands.event_loop: the commands' loop is uvloop's, and behaves as asyncio's for what we use of it."""
import asyncio
import socket

import uvloop

from agent.commands import event_loop


def test_commands_run_on_uvloop_and_get_their_result_back():
    async def main():
        return type(asyncio.get_running_loop())

    assert issubclass(event_loop.run(main()), uvloop.Loop)


def test_the_loop_serves_streams_threads_readers_and_timers():
    """What the agent leans on: a loopback stream server, to_thread, add_reader on a foreign fd, call_at."""
    async def main():
        loop = asyncio.get_running_loop()

        async def echo(reader, writer):
            writer.write(await reader.readexactly(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        echoed = await asyncio.wait_for(reader.readexactly(5), 5)
        writer.close()
        server.close()
        await server.wait_closed()

        threaded = await asyncio.to_thread(sum, [1, 2, 3])

        left, right = socket.socketpair()
        readable = loop.create_future()
        loop.add_reader(left.fileno(), readable.set_result, "x")
        right.send(b"!")
        why = await asyncio.wait_for(readable, 5)
        loop.remove_reader(left.fileno())
        left.close()
        right.close()

        fired = loop.create_future()
        loop.call_at(loop.time() + 0.01, fired.set_result, "timer")
        return echoed, threaded, why, await asyncio.wait_for(fired, 5)

    assert event_loop.run(main()) == (b"hello", 6, "x", "timer")


def test_timers_never_fire_before_their_time():
    """uvloop rounds delays to the nearest millisecond: half its timers fired early, and code waiting for a
    deadline spun until the millisecond turned (the input pacer sent a chaff record on each turn)."""
    async def main():
        loop = asyncio.get_running_loop()
        early = []
        for i in range(200):
            due = loop.time() + 0.0004 + (i % 7) * 0.00031  # deadlines between the milliseconds
            fired = loop.create_future()
            loop.call_at(due, lambda f=fired: f.set_result(loop.time()))
            at = await asyncio.wait_for(fired, 5)
            if at < due:
                early.append((due, at))
        return early

    assert event_loop.run(main()) == []


def test_without_uvloop_it_is_asyncio_run(monkeypatch):
    monkeypatch.setattr(event_loop, "uvloop", None)

    async def main():
        return type(asyncio.get_running_loop())

    assert not issubclass(event_loop.run(main()), uvloop.Loop)
