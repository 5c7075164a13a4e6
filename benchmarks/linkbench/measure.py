"""The client side of the link benchmark: one viewer, ground truth, and what we measure.

The viewer is our RFB client, offering the same encodings to every server,
and it behaves like most viewers: one incremental request outstanding at all
times, the next sent as soon as an update has been decoded.

Latency of a step: from the moment the harness sees the step's change on the
X screen (its ground truth grab) to the first decoded update after which the
client's framebuffer shows it, checked only inside the area that step
changed: exactly (lossless) or, in the JPEG setting, at PSNR >= a threshold
or clearly nearer the new state than the old one (see Matcher). A client that
skips a state is credited when it shows a later state of the same area
(that is how RFB works: the server sends the screen as it is now). Steps
never shown before the end are counted as missed.
"""
from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from agent.rfb import constants as C
from agent.rfb.client import PIXEL_ENCODINGS

Region = tuple[int, int, int, int]
MAX_PENDING = 64          # unresolved steps kept; older ones are counted as missed
MAX_VERSIONS = 48         # states of a step's area kept while it waits to be shown
SAMPLE_PIXELS = 8192      # JPEG setting: PSNR on a grid sample of about this many pixels per area
LOSSY_MARGIN = 8          # JPEG setting: the changed box grown by this much, so one glyph's ringing
                          # is judged with its surroundings, as an eye would
CLOSER_BY = 10.0          # JPEG setting: or this many dB closer to the new state than to the old one
                          # (JPEG'd dense text rarely reaches 30 dB, yet the page has plainly changed)
POINTER_MASK = 48         # pixels around the parked pointer left out of full-screen comparisons


# ---------------------------------------------------------------- settings offered by the client

@dataclass(frozen=True)
class Setting:
    """What the viewer offers: the same list for every server."""

    name: str
    encodings: tuple[int, ...]
    lossless: bool


COMPRESS_LEVEL = 6
JPEG_QUALITY = 6
_COMMON = (C.ENC_TIGHT, C.ENC_ZRLE, C.ENC_HEXTILE, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_RAW)
_PSEUDO = (C.ENC_COMPRESS_LEVEL_0 + COMPRESS_LEVEL, C.ENC_LAST_RECT, C.ENC_CURSOR, C.ENC_DESKTOP_SIZE,
           C.ENC_EXTENDED_DESKTOP_SIZE, C.ENC_FENCE)
SETTINGS = {
    # no quality-level pseudo-encoding: Tight servers stay lossless
    "lossless": Setting("lossless", _COMMON + _PSEUDO, True),
    "jpeg": Setting("jpeg", _COMMON + (C.ENC_JPEG_QUALITY_0 + JPEG_QUALITY,) + _PSEUDO, False),
}


# ---------------------------------------------------------------- ground truth and CPU

class Grabber:
    """Screen grabs of the X display, region by region, in one worker thread (mss is per thread)."""

    def __init__(self, display: str) -> None:
        self.display = display
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="linkbench-grab")
        self._sct: Any = None

    def _grab(self, region: Region) -> np.ndarray:
        if self._sct is None:
            import mss

            factory = getattr(mss, "MSS", None) or mss.mss
            self._sct = factory(display=self.display)
        x, y, w, h = region
        shot = self._sct.grab({"left": x, "top": y, "width": w, "height": h})
        frame = np.frombuffer(shot.raw, np.uint8).reshape(h, w, 4).copy()
        frame[..., 3] = 255  # X leaves the padding byte undefined; the viewer's framebuffer has 255
        return frame

    async def grab(self, region: Region) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._grab, region)

    def close(self) -> None:
        def _close() -> None:
            if self._sct is not None:
                self._sct.close()
                self._sct = None

        self._pool.submit(_close).result(5)
        self._pool.shutdown(wait=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two BGR(A) images over the colour channels, in dB (inf if equal)."""
    d = a[..., :3].astype(np.int32) - b[..., :3].astype(np.int32)
    mse = float(np.mean(d * d)) if d.size else 0.0
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


def pointer_mask(frame: np.ndarray, pointer: tuple[int, int]) -> np.ndarray:
    """A copy with the area around the parked pointer blanked (servers may paint the cursor in)."""
    out = np.array(frame[..., :3])
    px, py = pointer
    out[max(py - POINTER_MASK, 0):py + POINTER_MASK, max(px - POINTER_MASK, 0):px + POINTER_MASK] = 0
    return out


def frames_match(shown: np.ndarray, truth: np.ndarray, lossless: bool, min_psnr: float) -> bool:
    if lossless:
        return np.array_equal(shown[..., :3], truth[..., :3])
    return psnr(shown, truth) >= min_psnr


# ---------------------------------------------------------------- matching steps to updates

def _digest(area: np.ndarray) -> bytes:
    """A digest of a BGRA area (alpha is 255 on both sides, so whole pixels can be hashed)."""
    return _HASH(np.ascontiguousarray(area).data)


try:
    import xxhash

    _HASH = xxhash.xxh3_128_digest
except ImportError:  # xxhash is a test extra; blake2b is slower but fine
    import hashlib

    def _HASH(data: bytes) -> bytes:
        return hashlib.blake2b(data, digest_size=16).digest()


class _Target:
    """One step's change: where, when, and every state its area has had since (as digests or samples)."""

    def __init__(self, index: int, t0: float, bbox: Region, lossless: bool, before: np.ndarray) -> None:
        self.index = index
        self.t0 = t0
        self.bbox = bbox
        self.lossless = lossless
        self.stride = 1 if lossless else max(1, int(math.sqrt(bbox[2] * bbox[3] / SAMPLE_PIXELS)))
        self.versions: list = []
        self.before = None if lossless else self.key(before)  # the area as it was before the step

    def key(self, area: np.ndarray) -> Any:
        if self.lossless:
            return _digest(area)
        return np.array(area[::self.stride, ::self.stride, :3])

    def add_version(self, area: np.ndarray) -> None:
        self.versions.append(self.key(area))
        if len(self.versions) > MAX_VERSIONS:
            self.versions.pop(0)

    def shown(self, key: Any, min_psnr: float) -> bool:
        if self.lossless:
            return key in self.versions
        best = max(psnr(key, v) for v in self.versions)
        return best >= min_psnr or best >= psnr(key, self.before) + CLOSER_BY


def _overlap(a: Region, b: Region) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


class Matcher:
    """Keeps the ground truth of the watched region and resolves each step's latency.

    A step counts as shown once the viewer's framebuffer, inside the area that
    step changed, equals (lossless) any state the screen had there from that
    step on (the step's own result or a later one); in the JPEG setting, once
    it is within the PSNR threshold of such a state, or ``CLOSER_BY`` dB
    nearer to it than to the area's state before the step. Each pending step keeps those states as digests (lossless)
    or grid samples (JPEG), so memory stays small however far a viewer lags.
    """

    def __init__(self, region: Region, baseline: np.ndarray, *, lossless: bool, min_psnr: float) -> None:
        self.region = region
        self.latest = np.array(baseline)
        self.lossless = lossless
        self.min_psnr = min_psnr
        self.pending: list[_Target] = []
        self.latencies: list[float] = []
        self.missed = 0
        self.steps_changed = 0
        self.steps_unchanged = 0

    def _latest(self, box: Region) -> np.ndarray:
        x, y, w, h = box
        rx, ry = self.region[:2]
        return self.latest[y - ry:y - ry + h, x - rx:x - rx + w]

    def differs(self, hint: Region, grab: np.ndarray) -> bool:
        return not np.array_equal(self._latest(hint), grab)

    def add_step(self, index: int, t0: float, hint: Region, grab: np.ndarray) -> Optional[Region]:
        """Record the truth after a step; returns the changed box (screen coordinates) or None."""
        x, y = hint[:2]
        old = self._latest(hint)
        diff = np.any(old != grab, axis=2)
        if not diff.any():
            self.steps_unchanged += 1
            return None
        self.steps_changed += 1
        rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
        bbox = (x + int(cols[0]), y + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
        if not self.lossless:
            m = LOSSY_MARGIN
            bbox = clip_region((bbox[0] - m, bbox[1] - m, bbox[2] + 2 * m, bbox[3] + 2 * m), self.region)
        target = _Target(index, t0, bbox, self.lossless, self._latest(bbox))
        old[...] = grab
        self.pending.append(target)
        if len(self.pending) > MAX_PENDING:
            self.pending.pop(0)
            self.missed += 1
        for target in self.pending:
            if _overlap(target.bbox, bbox):
                target.add_version(self._latest(target.bbox))
        return bbox

    def check(self, framebuffer: np.ndarray, t: float) -> None:
        """After a decoded update at time ``t``: resolve every step the framebuffer now shows."""
        if not self.pending:
            return
        keys: dict = {}
        keep = []
        for target in self.pending:
            x, y, w, h = target.bbox
            cache = (target.bbox, target.stride)
            if cache not in keys:
                keys[cache] = target.key(framebuffer[y:y + h, x:x + w])
            if target.shown(keys[cache], self.min_psnr):
                self.latencies.append(max(t - target.t0, 0.0))
            else:
                keep.append(target)
        self.pending = keep

    def finish(self) -> None:
        self.missed += len(self.pending)
        self.pending = []


class LoopLag:
    """How late a 10 ms timer fires: if the harness itself stalls, its latencies would be wrong."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.lags: list[float] = []
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(self.period)
            self.lags.append(loop.time() - t - self.period)

    async def stop(self) -> tuple[float, float]:
        """Stop; returns (p99, max) lag in seconds."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        return percentile(self.lags, 99), (max(self.lags) if self.lags else math.nan)


# ---------------------------------------------------------------- the viewer loop

@dataclass
class UpdateLog:
    """What the viewer received: (time, wire bytes, carried pixels) per update."""

    entries: list = field(default_factory=list)
    last_pixels: float = 0.0

    def add(self, t: float, nbytes: int, pixels: bool) -> None:
        self.entries.append((t, nbytes, pixels))
        if pixels:
            self.last_pixels = t

    def pixel_updates(self, since: float, until: float) -> int:
        return sum(1 for t, _, p in self.entries if p and since <= t <= until)


class Viewer:
    """Our RFB client kept busy: one request outstanding, the next sent when an update is decoded."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.log = UpdateLog()
        self.listeners: list[Callable[[np.ndarray, float], None]] = []
        self.updated = asyncio.Event()
        self.error: Optional[BaseException] = None
        self._task: Optional[asyncio.Task] = None
        self._last_request = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        incremental = False
        try:
            while True:
                update = await self.client.update(incremental=incremental, timeout=None)
                incremental = True
                t = time.monotonic()
                pixels = any(r[4] in PIXEL_ENCODINGS for r in update.rects)
                self.log.add(t, update.nbytes, pixels)
                fb = self.client.framebuffer
                for listener in self.listeners:
                    listener(fb, t)
                self.updated.set()
                if self._last_request:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection died: the run reports it
            self.error = exc
            self.updated.set()

    async def wait_update(self, timeout: float) -> bool:
        """Wait for the next decoded update; False on timeout. Raises if the connection died."""
        self.updated.clear()
        try:
            await asyncio.wait_for(self.updated.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        if self.error is not None:
            raise self.error
        return True

    async def finish_update(self, timeout: float) -> bool:
        """Request nothing more and wait for the update in flight: the framebuffer is then one whole
        update, not half of one. False if it did not arrive within ``timeout``."""
        self._last_request = True
        if self._task is None or self._task.done():
            return True
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        return bool(done)

    async def converge(self, check: Callable[[np.ndarray], bool], *, timeout: float,
                       quiet: float) -> tuple[bool, float]:
        """Wait until ``check(framebuffer)`` holds (True), or ``timeout``, or (once any update with
        pixels has arrived) until ``quiet`` seconds pass without one; returns (matched, seconds waited)."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if self.error is not None:
                raise self.error
            if check(self.client.framebuffer):
                return True, time.monotonic() - start
            now = time.monotonic()
            if now >= deadline:
                return False, now - start
            if self.log.last_pixels and now - max(self.log.last_pixels, start) >= quiet:
                return False, now - start
            await self.wait_update(min(0.25, deadline - now))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        await self.client.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))





# ---------------------------------------------------------------- the record of one run

@dataclass
class RunResult:
    """One server x workload x link x setting x repeat. Times in seconds, bytes at the proxy."""

    server: str
    workload: str
    link: str
    setting: str
    repeat: int
    error: Optional[str] = None
    synced: bool = False
    sync_seconds: float = math.nan
    sync_bytes: int = 0
    seconds: float = math.nan
    bytes_down: int = 0
    bytes_up: int = 0
    updates: int = 0
    steps: int = 0
    steps_changed: int = 0
    missed: int = 0
    latencies: list = field(default_factory=list)
    cpu_server: float = math.nan
    cpu_xvfb: float = math.nan
    cpu_helpers: float = math.nan
    converged: bool = False
    converge_seconds: float = math.nan
    exact_fraction: float = math.nan
    psnr: float = math.nan
    frame_match: Optional[int] = None
    loop_lag_p99: float = math.nan
    loop_lag_max: float = math.nan
    step_lateness_max: float = math.nan
    phases: dict = field(default_factory=dict)
    series: list = field(default_factory=list)
    stages: dict = field(default_factory=dict)  # --stages: per agent method, calls and thread CPU in the window
    profile: Optional[str] = None  # --profile: the agent's cProfile stats over the window, relative to --out

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 95)

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.seconds if self.seconds and self.seconds > 0 else math.nan

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_server / self.seconds if self.seconds and self.seconds > 0 else math.nan

    def to_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out.update(p50=self.p50, p95=self.p95, updates_per_s=self.updates_per_s, cpu_percent=self.cpu_percent)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def clip_region(box: Region, to: Region) -> Region:
    x0, y0 = max(box[0], to[0]), max(box[1], to[1])
    x1, y1 = min(box[0] + box[2], to[0] + to[2]), min(box[1] + box[3], to[1] + to[3])
    return (x0, y0, max(x1 - x0, 0), max(y1 - y0, 0))
