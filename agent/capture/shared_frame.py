"""One screen frame in memory, with copy-on-write scratch frames: a big screen costs one frame, not two.

Why: change detection compares the new grab with the previous frame, so the
FramePool keeps two full buffers (the current frame, which viewers' encoders
read, and the one being written). At 3840x2160 that is 2 x 33 MB; the agent's
whole remaining footprint is about 75 MB. Here the current frame lives in a
memfd, mapped shared; ``take`` maps the same memfd again, privately: it reads
as the current frame at no cost, and only the pages a grab writes are copied
(the kernel's copy-on-write). The detector compares the two mappings; then
``write_back`` copies the changed rectangles into the current frame and the
scratch mapping is dropped with its copied pages.

The price:

* the current frame is written in place, so its readers (viewers' encoders)
  and ``write_back`` must take turns: ``agent.service.frame_gate``;
* a grab pays a page fault per 4 KiB page it writes: about 2.5 us a page,
  21 ms for a whole 4K frame against 3 ms for a plain copy (measured on the
  2-core CI machine). Typing and ``top`` write a few dozen pages; a
  full-screen change at 4K is the worst case. Hence only for big screens
  (``agent.service.capture_loop.ONE_FRAME_MIN_BYTES``).

RSS counts a memfd page once per mapping that touches it: pages a scratch
mapping only reads (outside the grab) count twice while it lives, so the
figure overstates, never understates, what the frame costs.
"""
from __future__ import annotations

import mmap
import os
from typing import Sequence

import numpy as np

Rect = tuple[int, int, int, int]


class SharedFrame:
    """The current frame (``current``, written only by ``write_back``) and its copy-on-write scratch frames."""

    in_place = True  # ``current`` is written: readers and write_back take turns (FramePool's frames are not)

    def __init__(self, height: int, width: int) -> None:
        """Raises OSError where memfds or private mappings are not available (then use a FramePool)."""
        self._size = height * width * 4
        self._shape = (height, width, 4)
        self._fd = os.memfd_create("rejnet-frame", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self._fd, self._size)
            self.current = self._map(mmap.MAP_SHARED)
        except BaseException:
            os.close(self._fd)
            raise

    def _map(self, flags: int) -> np.ndarray:
        mapped = mmap.mmap(self._fd, self._size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        # the array keeps the mapping alive; it is unmapped when the last view of it goes
        return np.frombuffer(mapped, np.uint8).reshape(self._shape)

    def take(self) -> np.ndarray:
        """A scratch frame equal to ``current``: writes to it copy only the pages they touch."""
        if self._fd < 0:
            raise ValueError("the shared frame is closed")
        return self._map(mmap.MAP_PRIVATE)

    def write_back(self, scratch: np.ndarray, changed: Sequence[Rect]) -> None:
        """``current`` takes ``scratch``'s pixels in ``changed`` (everywhere else they are equal already).

        Only while no reader reads ``current`` (agent.service.frame_gate).
        """
        current = self.current
        for x, y, w, h in changed:
            current[y:y + h, x:x + w] = scratch[y:y + h, x:x + w]

    def release(self, scratch: np.ndarray) -> None:
        """``scratch`` equals ``current`` (nothing changed): nothing to do, its pages go with it."""

    discard = release  # a failed grab: the same, a scratch frame is never reused

    def nbytes(self) -> int:
        return self._size

    def close(self) -> None:
        """Let the memfd go; the mappings stay valid until their last array goes."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
