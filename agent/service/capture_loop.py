"""The one capture loop of a service: grab, detect changes, hand the frame to every connection.

Grab and change detection run in a worker thread (the kernels release the
GIL). With a damage hint (X DAMAGE) the loop sleeps until X reports drawing
and grabs only then; without one it polls, backing off while the screen is
idle. Nobody connected means no capture at all.

A source that can write sub-images into a buffer we own (``grab_into``: X11
over MIT-SHM) gets only the rectangles DAMAGE reported grabbed, and only their
tiles compared. When the source can hand over the damage first
(``take_damage``) and it is small (a typed character: a few glyphs), grab and
compare run right on the event loop: well under a millisecond, where the
thread hop alone (a futex wake each way, the loop's self-pipe) cost about as
much as the grab. Large damage, confirming and whole grabs stay in the worker
thread. Damage in areas that churn (a log printing, an animation: drawn 20-50
times a second) is held back and grabbed a few times a second with what else
is held (agent.service.churn_damage): the typed character in another window
still goes at once. A tick costs wake-ups, and on a VM each is charged far more than the
work it does: an idle loop sleeps in one wait until X reports drawing (or a
wake-up, or the next confirming grab), then in one timer for the settle pause
and the frame-rate cap together (agent.service.damage_wait). The buffers come from a FramePool: a frame handed out is
never written again; a buffer no one holds any more is brought up to date by
copying the regions changed since and reused. On a screen of ONE_FRAME_MIN_BYTES
or more a SharedFrame replaces it: one frame, written in place between viewers'
updates (``gate``), grabs going into copy-on-write scratch mappings of it. DAMAGE is never trusted alone:
every HINT_CONFIRM_INTERVAL one of CONFIRM_BANDS bands of the screen (smaller ones,
more often, with a SharedFrame) is grabbed
and compared whether drawn or not (the whole screen every few seconds, at a
fraction of a full grab's cost each time; up to four times less often while
DAMAGE keeps proving right: agent.service.confirm_pace), and a client arriving after an idle
spell gets a full grab.

Large buffers at W x H (4 W H bytes each, 33 MB at 3840x2160): the current
frame (``self.frame``, shared by reference with the viewers' updaters and the
detector, which keeps no copy), the pool's buffer being written (or waiting to
be), and a third only while a viewer's encoder still reads an older frame;
plus the grabber's 2 MiB shared segment. With a SharedFrame: the current frame
only, and while a grab is compared the pages it wrote (a confirming band: at
most SHARED_BAND_MAX_BYTES).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from agent.capture.base import ScreenSource
from agent.capture.frame_pool import FramePool
from agent.capture.shared_frame import SharedFrame
from agent.changes.detector import ChangeDetector, Changes
from agent.errors import CaptureError
from agent.models import CursorShape, Rect, rects_area
from agent.service.churn_damage import HELD_INTERVAL, ChurnDamage
from agent.service.confirm_pace import CONFIRM_BANDS, HINT_CONFIRM_INTERVAL, ConfirmPace, damage_missed
from agent.service.damage_wait import DAMAGE_SETTLE, DamageWait  # noqa: F401  (DAMAGE_SETTLE re-exported)
from agent.service.frame_gate import FrameGate

log = logging.getLogger(__name__)

MAX_IDLE_INTERVAL = 0.25    # slowest capture poll while nothing changes (no damage hint)
# One frame (SharedFrame): a band's pages are copied while it is compared, so on a big screen bands are
# at most this big, more of them, confirmed more often: the whole screen as often as with CONFIRM_BANDS bands.
SHARED_BAND_MAX_BYTES = 4 << 20
IDLE_BACKOFF = 1.5          # poll interval growth per unchanged frame
INLINE_MAX_PIXELS = 64 * 64 * 8  # damage up to this many pixels is grabbed and compared on the event loop
# Screens of this many bytes or more keep one frame (SharedFrame), smaller ones two (FramePool). At
# 3840x2160 one frame saves 33 MB of an agent's ~140; it costs a page fault per page a grab writes (a
# whole 4K frame 21 ms instead of 3) and viewers' updates wait while changes are written back. At
# 1920x1080 the second frame is 8 MB: not worth slower page flips there.
ONE_FRAME_MIN_BYTES = 16 << 20

CHURN_FPS = 1.0 / HELD_INTERVAL  # grabs a second of areas that never stop changing (agent.service.churn_damage)

FrameHandler = Callable[[np.ndarray, Optional[Changes], Optional[CursorShape]], None]


class CaptureLoop:
    """Captures ``source`` at up to ``fps`` while ``wanted()`` and feeds ``on_frame``."""

    def __init__(self, source: ScreenSource, fps: float, *, on_frame: FrameHandler,
                 wanted: Callable[[], bool], on_failure: Callable[[BaseException], None],
                 one_frame_min_bytes: int = ONE_FRAME_MIN_BYTES, churn_fps: float = CHURN_FPS) -> None:
        """``churn_fps``: how often areas that never stop changing are grabbed (0: at ``fps`` like the rest)."""
        self.source = source
        self.fps = fps
        self.churn_fps = churn_fps
        self._on_frame = on_frame
        self._wanted = wanted
        self._on_failure = on_failure
        self.frames_captured = 0
        self.frames_skipped = 0  # ticks where the damage hint spared a grab
        self.frame: Optional[np.ndarray] = None  # the last frame handed out; nobody writes to it
        self.cursor: Optional[CursorShape] = None
        self._hint: Any = None  # None: not probed yet; False: the source has no damage hint
        self._detector: Optional[ChangeDetector] = None
        self._detector_size = (0, 0)
        self._pool: FramePool | SharedFrame = FramePool()
        self.one_frame_min_bytes = one_frame_min_bytes
        # viewers' updates read the frame holding this; a SharedFrame's write-back waits for them
        self.gate = FrameGate()
        self._unwritten: Optional[tuple[np.ndarray, list[Rect]]] = None  # a SharedFrame's grab to write back
        self._band = 0  # the next band a confirming grab covers
        self._pace = ConfirmPace(HINT_CONFIRM_INTERVAL)
        self._missed: Optional[bool] = None  # the last confirming grab found what DAMAGE missed
        self._wake = asyncio.Event()
        self._waits = DamageWait(source, self._damage_hint)  # the sleep between grabs
        self._small_damage = True  # the last grab's damage was small: take the next on the event loop
        self._input_seen = False  # input usually changes the screen: poll at full rate again
        self._force = False  # grab_now(): the next grab ignores the damage hint
        self._churn: Optional[ChurnDamage] = None  # damage in churning areas, held back (sub-image sources)
        self._task: Optional[asyncio.Task[None]] = None
        self._closing = False

    @property
    def size(self) -> tuple[int, int]:
        """The size connections are served at: the last frame's, else the source's."""
        return self.source.size if self.frame is None else (self.frame.shape[1], self.frame.shape[0])

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def wake(self) -> None:
        """Look at the screen now (a viewer arrived, or asked)."""
        self._wake.set()
        self._waits.resolve("wake")

    def grab_now(self) -> None:
        """Grab at once, whatever the damage hint says: a client arrived after the loop had been idle, so
        the last frame may be stale and only a fresh grab tells what the screen shows now."""
        self._force = True
        self.wake()

    def note_input(self, pointer: bool = False) -> None:
        """Input was injected: the screen is about to change, so grab now rather than after a back-off.

        A sub-image source with a damage hint grabs on X's damage report, not on
        the input (the echo is not drawn yet): waking the loop there would only
        cost a tick per key event. ``pointer``: a pointer event, after which
        churning areas are grabbed at the full rate for a while (agent.service.churn_damage).
        """
        if pointer and self._churn is not None:
            self._churn.note_pointer(asyncio.get_running_loop().time())
        if not self._input_seen:
            self._input_seen = True
            if not (self._hint and getattr(self.source, "sub_images", False)):
                self.wake()

    async def close(self) -> None:
        self._closing = True
        self.wake()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def _damage_hint(self) -> Optional[Callable[[], Optional[bool]]]:
        """The source's "anything drawn since the last grab?" query (X DAMAGE), if it has a working one."""
        if self._hint is None:
            query = getattr(self.source, "damaged", None)
            self._hint = query if callable(query) and query() is not None else False
        return self._hint or None

    def _grab(self, force: bool = True, confirm: bool = True, whole: bool = False,
              damage: Sequence[tuple[int, int, int, int]] | None | bool = False
              ) -> Optional[tuple[np.ndarray, Changes, Optional[CursorShape]]]:
        """Capture, detect, and hand out a new frame only when it changed (worker thread, or inline when small).

        Returns None, without grabbing, when the damage hint says nothing was
        drawn and ``force`` is off. ``confirm``: compare more than the damage
        (the next band, or everything with ``whole``), since DAMAGE may miss drawing.
        ``damage``: what the source's ``take_damage()`` returned just before (False: not taken yet).
        """
        hint = self._damage_hint()
        if not force and hint is not None and hint() is False:
            return None
        if getattr(self.source, "sub_images", False):
            grabbed = self._grab_sub_images(confirm, whole, damage)
            if grabbed is not None:
                return grabbed[0], grabbed[1], self.source.cursor()
        frame = self.source.grab()
        changes = self._detect(frame, None)
        owned = self.frame
        if owned is None or not changes.is_empty() or owned.shape != frame.shape:
            # viewers encode from a frame nobody writes to; a source that may reuse its buffer is copied
            owned = frame if self.source.fresh_frames else frame.copy()
            if self.source.fresh_frames:
                self._adopt(owned)
        return owned, changes, self.source.cursor()

    def _adopt(self, frame: np.ndarray) -> None:
        """``frame`` (a whole grab in a buffer of its own) is the current frame, pooled from now on."""
        if not isinstance(self._pool, FramePool):
            self._pool = FramePool()  # from a SharedFrame: its frame goes once the viewers move on
        self._pool.adopt(frame)

    def _detect(self, frame: np.ndarray, damage: Optional[Sequence[tuple[int, int, int, int]]],
                keep: Optional[np.ndarray] = None) -> Changes:
        height, width = frame.shape[:2]
        if self._detector is None:
            # frames kept as they are (fresh or pooled) are never written again: no copy in the detector
            immutable = self.source.fresh_frames or bool(getattr(self.source, "sub_images", False))
            self._detector = ChangeDetector(width, height, frames_immutable=immutable)
        elif self._detector_size != (width, height):
            self._detector.resize(width, height)
        self._detector_size = (width, height)
        return self._detector.update(frame, damage, keep=keep)

    def _whole_buffer(self, height: int, width: int) -> tuple[np.ndarray, Optional[SharedFrame]]:
        """A buffer for a whole grab: a new SharedFrame's frame on a big screen, else a plain array."""
        if height * width * 4 >= self.one_frame_min_bytes:
            try:
                shared = SharedFrame(height, width)
                return shared.current, shared
            except OSError as exc:  # no memfd (an old kernel): two frames, as on small screens
                log.debug("one-frame capture unavailable, keeping two frames: %s", exc)
                self.one_frame_min_bytes = 1 << 62
        return np.empty((height, width, 4), np.uint8), None

    def _grab_sub_images(self, confirm: bool, whole: bool,
                         damage: Sequence[tuple[int, int, int, int]] | None | bool = False
                         ) -> Optional[tuple[np.ndarray, Changes]]:
        """Grab what DAMAGE reported into a pooled buffer (plus a band, or all, to confirm); None: not possible."""
        current = self.frame
        width, height = self.source.size
        if damage is False and callable(getattr(self.source, "take_damage", None)):
            damage = self._hold_churn(self.source.take_damage(), time.monotonic())  # type: ignore[attr-defined]
        if whole and self._churn is not None:
            self._churn.clear()
        taken = {} if damage is False else {"damage": damage}  # sources without take_damage get no keyword
        if current is None or self._pool.current is not current or current.shape[:2] != (height, width):
            # the first frame, or after a full grab(): a whole grab into a new buffer the pool adopts
            buffer, shared = self._whole_buffer(height, width)
            if self.source.grab_into(buffer, [(0, 0, width, height)], **taken) is None:  # type: ignore[attr-defined]
                return None
            changes = self._detect(buffer, None)
            if current is not None and changes.is_empty() and current.shape == buffer.shape:
                return current, changes
            if shared is not None:
                self._pool = shared  # viewers still reading the old frame keep it alive until they move on
            else:
                self._adopt(buffer)
            return buffer, changes
        also: list[tuple[int, int, int, int]] = []
        if whole:
            also = [(0, 0, width, height)]
        elif confirm:
            bands = self._confirm_bands()
            band = self._band % bands
            top, bottom = height * band // bands, height * (band + 1) // bands
            self._band = (band + 1) % bands
            if bottom > top:
                also = [(0, top, width, bottom - top)]
        if damage == [] and not also:  # all of it held back (churn_damage): nothing to grab now
            self._small_damage = True
            return current, Changes()
        try:
            buffer = self._pool.take()
        except OSError as exc:  # a SharedFrame could not map (no descriptor or memory left): grab() serves
            log.warning("cannot map a scratch frame, grabbing the whole screen instead: %s", exc)
            return None
        try:
            # only rows that differ from the current frame are written, and reported: what changed
            written = self.source.grab_into(buffer, also, base=current, **taken)  # type: ignore[attr-defined]
        except BaseException:
            self._pool.discard(buffer)
            raise
        if written is None:
            self._pool.discard(buffer)
            return None
        # what changed: small enough to take the next damage on the event loop? Held churn just grabbed
        # counts as small: until its next turn it is held again, and taking that costs no grab
        self._small_damage = rects_area(written) <= INLINE_MAX_PIXELS or (
            self._churn is not None and self._churn.released)
        pool = self._pool
        changes = self._detect(buffer, written, current if pool.in_place else None)
        changed = [c[2:] for c in changes.copies] + list(changes.rects)
        if confirm and not whole and damage is not False:  # did the band find drawing X did not report?
            reported = None if damage is None else list(damage) + (self._churn.churning() if self._churn else [])
            self._missed = damage_missed(changed, reported)
        if changes.is_empty():
            pool.release(buffer)  # equal to the current frame: back to the pool, untouched by anyone
            return current, changes
        if self._churn is not None:
            changes.churn = self._churn.churning()
        if pool.in_place:
            self._unwritten = (buffer, changed)  # written into the current frame by write_back()
            return current, changes
        pool.commit(buffer, changed)  # type: ignore[union-attr]
        return buffer, changes

    def _hold_churn(self, damage: Optional[Sequence[Rect]], now: float) -> Optional[list[Rect]]:
        """Of the damage just taken from X, what to grab now: churning areas are held back (churn_damage)."""
        if not self.churn_fps:
            return None if damage is None else list(damage)
        size = self.source.size
        if self._churn is None:
            self._churn = ChurnDamage(*size, held_interval=1.0 / self.churn_fps)
        elif (self._churn.width, self._churn.height) != size:
            self._churn.resize(*size)
        return self._churn.split(now, damage)

    def write_back(self) -> None:
        """Write the last grab's changes into a SharedFrame's current frame (under ``gate.writing()``)."""
        if self._unwritten is not None:
            buffer, changed = self._unwritten
            self._unwritten = None
            self._pool.write_back(buffer, changed)  # type: ignore[union-attr]

    def _confirm_bands(self) -> int:
        """How many bands a confirming grab takes the screen in: more on a big screen kept as one frame."""
        if not self._pool.in_place or self.frame is None:
            return CONFIRM_BANDS
        return max(CONFIRM_BANDS, -(-self.frame.nbytes // SHARED_BAND_MAX_BYTES))

    def _forget_frame(self) -> None:
        """Let a SharedFrame go before grab_now()'s whole grab: nobody was watching, so nobody needs the stale
        frame, and the fresh grab goes into a new one instead of a scratch frame beside it (two frames)."""
        self.frame = None
        self._pool = FramePool()
        self._detector = None

    async def _publish(self, frame: np.ndarray, changes: Changes, cursor: Optional[CursorShape]) -> None:
        """Hand the frame to the viewers; a SharedFrame's changes are written into it first, between updates."""
        if self._unwritten is None:
            self.frame, self.cursor = frame, cursor
            self._on_frame(frame, changes, cursor)
            return
        async with self.gate.writing():
            if rects_area(self._unwritten[1]) > INLINE_MAX_PIXELS:
                await asyncio.to_thread(self.write_back)
            else:
                self.write_back()
            # marked before the gate opens: no update can plan from the trackers before they know
            self.frame, self.cursor = frame, cursor
            self._on_frame(frame, changes, cursor)

    def _inline_damage(self, confirm: bool) -> Sequence[tuple[int, int, int, int]] | None | bool:
        """Take the damage on the event loop when the last was small and nothing more is to be grabbed.

        False: not taken (the worker thread takes it). One round trip to X
        blocks the loop; skipped after large damage (a busy X server answers slowly).
        """
        take = getattr(self.source, "take_damage", None)
        if confirm or not self._small_damage or take is None or not getattr(self.source, "sub_images", False) \
                or self.frame is None or self._pool.current is not self.frame:
            return False
        return take()

    def _grab_inline(self, damage: Sequence[tuple[int, int, int, int]] | None
                     ) -> Optional[tuple[np.ndarray, Changes, Optional[CursorShape]]]:
        """Grab the taken ``damage`` on the event loop; None when sub-images cannot serve (never a full grab here)."""
        grabbed = self._grab_sub_images(False, False, damage)
        return None if grabbed is None else (grabbed[0], grabbed[1], self.source.cursor())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        frame_time = 1.0 / self.fps
        interval = frame_time
        last_confirm = last_grab = float("-inf")
        news = False  # the last wait ended on X's news: its reader just read that something was drawn
        try:
            while not self._closing:
                if not self._wanted():
                    self._waits.pause()
                    self._wake.clear()
                    await self._wake.wait()  # nobody to serve: no capture at all
                    continue
                started = loop.time()
                self._wake.clear()  # wake-ups during the grab count for the next wait
                input_seen, self._input_seen = self._input_seen, False
                forced, self._force = self._force, False
                if forced and self._pool.in_place:
                    self._forget_frame()
                confirm_interval = self._pace.interval(self._confirm_bands())
                confirm = started - last_confirm >= confirm_interval
                held_due = math.inf if self._churn is None else self._churn.due
                # after input, a full-frame source grabs at once; a sub-image one waits for X's damage report
                force = (forced or self.frame is None or confirm or started >= held_due
                         or input_seen and not getattr(self.source, "sub_images", False))
                hint = self._damage_hint()
                # the hint is a non-blocking read of the X connection: asked here, an idle tick costs no thread hop
                drawn, news = news, False
                if not force and hint is not None and not drawn and hint() is False:
                    if self.frame is not None and self.source.cursor_news():
                        # the pointer changed shape, nothing was drawn: the shape goes now, alone
                        await self._publish(self.frame, Changes(), self.source.cursor())
                        continue
                    # idle: sleep until X reports drawing (no grab before a frame time after the last)
                    self.frames_skipped += 1
                    if not self._wake.is_set():  # (set while grabbing: look again at once)
                        news = await self._waits.wait(min(last_confirm + confirm_interval, held_due) - loop.time(),
                                                      last_grab + frame_time, self.fps) == "x"
                    continue
                if hint is not None and last_grab + frame_time > started:
                    # with a hint, the loop comes straight back after a grab: keep to --fps here
                    await asyncio.sleep(last_grab + frame_time - started)
                    started = loop.time()
                damage = self._inline_damage(confirm or forced)
                if damage is not False:
                    damage = self._hold_churn(damage, started)
                    if damage == [] and not forced:  # only churning areas drew: they wait for held_due
                        self.frames_skipped += 1
                        last_grab = started
                        continue
                if damage is not False and (damage is None or rects_area(damage) > INLINE_MAX_PIXELS):
                    self._small_damage = False
                grabbed = None
                if damage is not False and self._small_damage:
                    grabbed = self._grab_inline(damage)  # a few glyphs: cheaper than a thread hop
                    if grabbed is None:  # sub-images could not serve (a resize): the taken damage is gone,
                        confirm = forced = True  # so the worker thread grabs everything
                        damage = False
                if grabbed is None:
                    self._waits.pause()  # the X connections are the worker's until it is done
                    grabbed = await asyncio.to_thread(self._grab, True, confirm or forced, forced, damage)
                last_grab = started
                if grabbed is None:  # the source could not grab (a display going away, a resize): look again
                    self.frames_skipped += 1
                    await asyncio.sleep(frame_time)
                    continue
                frame, changes, cursor = grabbed
                if confirm or forced or not getattr(self.source, "sub_images", False):
                    last_confirm = started  # every grab of a full-frame source confirms
                    self._pace.confirmed(self._missed, self._confirm_bands())
                    self._missed = None
                self.frames_captured += 1
                await self._publish(frame, changes, cursor)
                if hint is not None:
                    continue  # the next tick waits for X's damage report; the frame-rate cap is kept above
                if changes.is_empty() and not input_seen and self._hint is False:
                    # no damage hint: back off polling an idle screen (with one, ticks are cheap hint checks)
                    interval = min(interval * IDLE_BACKOFF, MAX_IDLE_INTERVAL)
                else:
                    interval = 1.0 / self.fps
                delay = max(0.0, interval - (loop.time() - started))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                rest = 1.0 / self.fps - (loop.time() - started)
                if rest > 0:  # woken early (input, new viewer): still never above --fps
                    await asyncio.sleep(rest)
        except CaptureError as exc:
            log.error("capture failed, closing all viewers: %s", exc)
            self._on_failure(exc)
        except Exception as exc:  # a bug must not leave viewers hanging on a dead loop
            log.exception("capture loop crashed")
            self._on_failure(exc)
        finally:
            self._waits.pause()
