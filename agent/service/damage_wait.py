"""The capture loop's sleep between grabs: until X has news, a wake-up, or a timeout (agent.service.capture_loop).

One future serves all three (no task per wait: each tick's cost is mostly its
wake-ups). News from X does not wake the loop: it sets the timer that does,
after both the settle pause (one keystroke is several X drawing requests:
glyph, cursor, status line, and one grab should catch them all) and the
frame-rate cap.

A source whose ``damaged()`` reads all its sockets hold (``hint_drains``: the
X11 source) keeps our reader on them from one wait to the next: adding and
removing a reader per wait cost libuv a poll handle and five system calls per
typed key. Its callback reads what came, so the socket does not stay readable,
and only drawing starts the settle. Its connections must then not be used from
another thread while the reader is on: ``pause()`` before a worker-thread grab.
Other sources (GNOME's frame pipe) get a reader for each wait, taken off at the
first news.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

DAMAGE_SETTLE = 0.004  # seconds between X's first damage report and the grab (TigerVNC: DeferUpdate)
TIMEOUT_SLACK = 0.002  # a wait's timeout within this of the one already set keeps that timer


class DamageWait:
    """Waits on ``source.hint_fileno()``; ``hint()`` is the source's "anything drawn?" (None: it has none)."""

    def __init__(self, source: Any, hint: Callable[[], Optional[Callable[[], Optional[bool]]]]) -> None:
        self.source = source
        self._hint = hint
        self._waiter: Optional[asyncio.Future[str]] = None
        # The timeout (the next confirming grab's time) stays set from wait to wait while it is the same: a
        # typed key then costs one timer (the settle), not three timer operations.
        self._timeout: Optional[asyncio.TimerHandle] = None
        self._settle: Optional[asyncio.TimerHandle] = None  # the settle after X's news
        self._not_before = 0.0
        self._settling = False
        self._kept: tuple[int, ...] = ()  # sockets our reader stays on between waits (a draining source)

    def resolve(self, why: str) -> None:
        """End the current wait, if any (a wake-up, the timeout, or the settle after X's news)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(why)

    async def wait(self, timeout: float, not_before: float, fps: float) -> str:
        """Sleep until X has news (then the settle pause, and never before ``not_before``), a ``resolve``,
        or ``timeout``; a source without a hint socket sleeps at most a frame (1 / ``fps``).

        Returns why it ended: "x" (X's news, already read), "timeout", or what ``resolve`` was given."""
        loop = asyncio.get_running_loop()
        fileno = getattr(self.source, "hint_fileno", None)
        fds = fileno() if callable(fileno) else None
        if fds is None or timeout <= 0:
            await asyncio.sleep(max(min(max(timeout, 0.0), 1.0 / fps), not_before - loop.time()))
            return "timeout"
        fds = (fds,) if isinstance(fds, int) else tuple(fds)
        keep = bool(getattr(self.source, "hint_drains", False))
        if keep and fds != self._kept:
            self.pause()
            for fd in fds:
                loop.add_reader(fd, self._readable)
            self._kept = fds
        elif not keep:
            for fd in fds:
                loop.add_reader(fd, self._news, fds)
        self._waiter = loop.create_future()
        self._not_before, self._settling = not_before, False
        deadline = loop.time() + timeout
        if self._timeout is None or abs(self._timeout.when() - deadline) > TIMEOUT_SLACK:
            self._cancel_timeout()
            self._timeout = loop.call_later(timeout, self._timed_out)
        try:
            return await self._waiter
        finally:
            if not keep:
                for fd in fds:
                    loop.remove_reader(fd)
            if self._settle is not None:
                self._settle.cancel()
                self._settle = None
            self._waiter = None

    def _timed_out(self) -> None:
        self._timeout = None
        self.resolve("timeout")

    def _cancel_timeout(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    def _readable(self) -> None:
        """A kept reader's callback: read what X sent (its socket must not stay readable); drawing ends the
        wait after the settle."""
        hint = self._hint()
        try:
            # a new cursor shape alone (nothing drawn) ends the wait too: the loop sends it without a grab
            drawn = hint is None or hint() is not False or self.source.cursor_news()
        except Exception as exc:  # the display went away: the loop's own next look reports it
            log.debug("reading X's news failed: %s", exc)
            self.pause()
            drawn = True
        if drawn:
            self._news(())

    def _news(self, fds: tuple[int, ...]) -> None:
        """News from X during a wait: the per-wait readers (``fds``) come off, and the settle starts."""
        loop = asyncio.get_running_loop()
        for fd in fds:
            loop.remove_reader(fd)
        if self._waiter is None or self._waiter.done() or self._settling:
            return
        self._settling = True
        self._settle = loop.call_later(max(DAMAGE_SETTLE, self._not_before - loop.time()), self.resolve, "x")

    def pause(self) -> None:
        """Take the kept reader off (before the source is used from another thread, or at the end)."""
        self._cancel_timeout()
        if self._kept:
            loop = asyncio.get_running_loop()
            for fd in self._kept:
                loop.remove_reader(fd)
            self._kept = ()
