"""Full-screen frame buffers recycled between grabs, for sources that write only what changed.

Why a pool: a frame handed to the viewers is never written again (their
encoders read it later, in worker threads), so every changed frame needs a
buffer nobody reads. Allocating one per grab costs 33 MB of fresh pages at
3840x2160 (faulted in, zeroed, copied); the pool instead keeps a few buffers
and reuses one once ``sys.getrefcount`` shows that only the pool holds it.

Steady state is two buffers (the current frame and the one being written); a
third exists only while a slow encoder still reads an older frame. Once that
spell is over, a buffer nobody needs (free, not chosen by ``take``) for
SURPLUS_SECONDS is dropped, so a moment of slowness does not cost 33 MB at
4K for the rest of the session.

A reused buffer still shows an older frame. The pool remembers, per frame it
handed out (a *generation*), the rectangles that differ from the one before
(the detector's copy destinations and changed rects, exact by its invariant),
and brings a buffer up to date by copying just those rectangles from the
current frame; far behind, it copies the whole frame.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from agent.models import rects_area

Rect = tuple[int, int, int, int]

MAX_POOLED = 3          # the current frame, the one being built, one still read by a slow encoder
MAX_LOGGED_RECTS = 512  # beyond this many rects to replay, a whole-frame copy is simpler
# A pooled buffer left free by every take() for this long is dropped: the slow reader that needed it
# is gone. Long enough that a reader slow now and then does not make every grab allocate 33 MB afresh.
SURPLUS_SECONDS = 5.0


class FramePool:
    """Writable buffers equal to the current frame, handed out by ``take`` and returned by ``commit``/``release``."""

    in_place = False  # a frame handed out is never written (agent.capture.shared_frame writes in place)

    def __init__(self, max_pooled: int = MAX_POOLED, *, surplus_seconds: float = SURPLUS_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_pooled = max_pooled
        self.surplus_seconds = surplus_seconds
        self._clock = clock
        self._buffers: list[np.ndarray] = []
        self._generations: list[int] = []  # the generation each pooled buffer's pixels equal (-1: unknown)
        self._spare_since: list[Optional[float]] = []  # when take() first left each free buffer unused
        self._log: list[tuple[int, Sequence[Rect]]] = []  # (generation, rects that differ from generation - 1)
        self.generation = 0
        self.current: Optional[np.ndarray] = None  # the last committed buffer (or a frame adopted from elsewhere)
        self.allocated = 0  # buffers allocated so far (tests, figures)
        self.dropped = 0  # surplus buffers let go (tests, figures)
        self.full_copies = 0  # buffers brought up to date by copying the whole frame

    def adopt(self, frame: np.ndarray) -> None:
        """``frame`` (a whole grab: the first, or after a size change) is the current frame now.

        It joins the pool, if there is room and it is writable, to be reused once nobody holds it.
        """
        if self._buffers and self._buffers[0].shape != frame.shape:
            self._buffers, self._generations, self._spare_since = [], [], []
        self.generation += 1
        self.current = frame
        self._generations = [-1] * len(self._buffers)
        self._log = []
        if frame.flags.writeable and frame.flags.c_contiguous and len(self._buffers) < self.max_pooled \
                and not any(b is frame for b in self._buffers):
            self._buffers.append(frame)
            self._generations.append(self.generation)
            self._spare_since.append(None)

    def take(self) -> np.ndarray:
        """A buffer nobody else holds, with the current frame's pixels (unset if there is no current frame)."""
        current = self.current
        index = self._free_index()
        if index is None:
            shape = current.shape if current is not None else None
            if shape is None:
                raise ValueError("take() before any frame: adopt() one first")
            buffer = np.empty(shape, np.uint8)
            self.allocated += 1
            if len(self._buffers) < self.max_pooled:
                self._buffers.append(buffer)
                self._generations.append(-1)
                self._spare_since.append(None)
                index = len(self._buffers) - 1
            else:  # every pooled buffer is still read: this one is garbage once its readers let go
                np.copyto(buffer, current)
                self.full_copies += 1
                return buffer
        buffer = self._buffers[index]
        if current is not None and buffer is not current:
            self._catch_up(buffer, self._generations[index], current)
        self._generations[index] = -1  # being written: unknown until commit or release
        return buffer

    def commit(self, buffer: np.ndarray, changed: Sequence[Rect]) -> None:
        """``buffer`` is the new current frame; ``changed`` covers every pixel that differs from the previous one."""
        self.generation += 1
        self._log.append((self.generation, list(changed)))
        self._set_generation(buffer, self.generation)
        self.current = buffer
        oldest = self.generation
        for g in self._generations:  # (a loop, not min() over a generator: once a typed key)
            if 0 <= g < oldest:
                oldest = g
        self._log = [entry for entry in self._log if entry[0] > oldest]

    def release(self, buffer: np.ndarray) -> None:
        """``buffer`` was not handed out and its pixels equal the current frame's."""
        self._set_generation(buffer, self.generation)

    def discard(self, buffer: np.ndarray) -> None:
        """``buffer`` was written in part (a failed grab): its pixels are unknown."""
        self._set_generation(buffer, -1)

    def nbytes(self) -> int:
        """Bytes held by pooled buffers (the current frame included when it is one of them)."""
        return sum(b.nbytes for b in self._buffers)

    def _set_generation(self, buffer: np.ndarray, generation: int) -> None:
        for i, pooled in enumerate(self._buffers):
            if pooled is buffer:
                self._generations[i] = generation

    def _free_index(self) -> Optional[int]:
        """A pooled buffer only the pool refers to (not the current frame), most up to date first.

        The other free buffers are surplus: each one left so for ``surplus_seconds`` is dropped here.
        """
        best = None
        free = []
        for i in range(len(self._buffers)):
            # references: the pool's list and getrefcount's argument (no local name may hold one here)
            if self._buffers[i] is not self.current and sys.getrefcount(self._buffers[i]) <= 2:
                free.append(i)
                if best is None or self._generations[i] > self._generations[best]:
                    best = i
            else:
                self._spare_since[i] = None
        if len(free) < 2:
            if best is not None:
                self._spare_since[best] = None
            return best
        now = self._clock()
        drop = []
        for i in free:
            if i == best:
                self._spare_since[i] = None
                continue
            since = self._spare_since[i]
            if since is None:
                self._spare_since[i] = now
            elif now - since >= self.surplus_seconds:
                drop.append(i)
        for i in reversed(drop):
            del self._buffers[i], self._generations[i], self._spare_since[i]
            self.dropped += 1
            if i < best:
                best -= 1
        return best

    def _catch_up(self, buffer: np.ndarray, generation: int, current: np.ndarray) -> None:
        if generation == self.generation:
            return
        rects = [r for g, changed in self._log if g > generation for r in changed] if generation >= 0 else None
        if rects is None or len(rects) > MAX_LOGGED_RECTS or \
                rects_area(rects) * 2 > buffer.shape[0] * buffer.shape[1]:
            np.copyto(buffer, current)
            self.full_copies += 1
            return
        for x, y, w, h in rects:
            buffer[y:y + h, x:x + w] = current[y:y + h, x:x + w]
