"""Sub-image capture over MIT-SHM: XShmGetImage of just the rectangles X DAMAGE reported.

mss grabs the whole root window and copies it into a new bytearray per shot:
33 MB allocated, faulted in and copied at 3840x2160 for a typed character.
Here one small shared segment (``SEGMENT_BYTES``, not a screen's worth) is
reused for every request: damaged rectangles are requested back to back at
different offsets (one round trip for all of them), a large rectangle goes in
bands of rows, and each result is copied straight into the caller's frame
buffer at its place. numpy's copy releases the GIL.

Built on mss's own XCB bindings (mss.linux.xcb, mss >= 10.2), on a connection
of our own; ``XShmGrabber.open`` returns None wherever that is not possible
(older mss, no MIT-SHM, a remote display, an unusual pixel layout) and the
caller keeps mss's full-frame path.
"""
from __future__ import annotations

import logging
import mmap
import os
from typing import Any, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

Rect = tuple[int, int, int, int]

SEGMENT_BYTES = 4 << 20  # 4 MiB: 273 rows of a 3840-pixel screen per request
_ALL_PLANES = 0xFFFFFFFF
_ZPIXMAP = 2


class XShmGrabber:
    """Grabs rectangles of the root window of ``display`` into a BGRA frame buffer."""

    def __init__(self, xcb: Any, conn: Any, root: Any, segment: Any, buf: mmap.mmap, size: int) -> None:
        self._xcb, self._conn, self._root, self._seg, self._buf, self._size = xcb, conn, root, segment, buf, size
        self._pixels = np.frombuffer(buf, np.uint8)  # the whole segment, read through views
        self.requests = 0  # XShmGetImage requests made (tests and figures)

    @classmethod
    def open(cls, display: Optional[str], size: int = SEGMENT_BYTES) -> Optional["XShmGrabber"]:
        """A grabber on a new connection to ``display``, or None (logged) when sub-image capture is unavailable."""
        try:
            from mss.linux import xcb
        except ImportError as exc:  # mss < 10.2 has no XCB bindings
            log.info("no XShm sub-image capture: %s", exc)
            return None
        try:
            conn, screen_num = xcb.connect(display)
        except Exception as exc:
            log.info("no XShm sub-image capture: %s", exc)
            return None
        try:
            setup = xcb.get_setup(conn)
            screen = xcb.setup_roots(setup)[screen_num]
            if setup.image_byte_order != xcb.ImageOrder.LSBFirst or screen.root_depth not in (24, 32):
                raise OSError(f"root depth {screen.root_depth} or byte order not BGRA")
            if not xcb.get_extension_data(conn, xcb.LIB.shm_id).present:
                raise OSError("MIT-SHM extension not present")
            version = xcb.shm_query_version(conn)
            if (version.major_version, version.minor_version) < (1, 2):
                raise OSError("MIT-SHM older than 1.2 (no fd passing)")
            fd = os.memfd_create("rejnet-xshm", os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
            buf = mmap.mmap(fd, size, prot=mmap.PROT_READ)
            segment = xcb.ShmSeg(xcb.generate_id(conn).value)
            xcb.shm_attach_fd(conn, segment, fd, read_only=False)  # XCB closes fd
        except Exception as exc:
            log.info("no XShm sub-image capture: %s", exc)
            xcb.disconnect(conn)
            return None
        return cls(xcb, conn, screen.root, segment, buf, size)

    def grab(self, frame: np.ndarray, rects: Sequence[Rect]) -> None:
        """Copy the screen's pixels of ``rects`` (clipped to ``frame``) into ``frame`` at the same places.

        Requests are pipelined while they fit in the segment; OSError if the server refuses one.
        """
        height, width = frame.shape[:2]
        pending: list[tuple[Any, int, Rect]] = []
        offset = 0
        for x, y, w, h in _clipped(rects, width, height):
            band = max(1, min(h, self._size // (4 * w)))
            for top in range(y, y + h, band):
                part = (x, top, w, min(band, y + h - top))
                nbytes = 4 * part[2] * part[3]
                if offset + nbytes > self._size:
                    self._collect(frame, pending)
                    pending, offset = [], 0
                pending.append((self._request(part, offset), offset, part))
                offset += (nbytes + 63) & ~63
        self._collect(frame, pending)

    def _request(self, rect: Rect, offset: int) -> Any:
        x, y, w, h = rect
        self.requests += 1
        return self._xcb.LIB.shm.xcb_shm_get_image(self._conn, self._root, x, y, w, h, _ALL_PLANES, _ZPIXMAP,
                                                    self._seg, offset)

    def _collect(self, frame: np.ndarray, pending: list[tuple[Any, int, Rect]]) -> None:
        for cookie, offset, (x, y, w, h) in pending:
            try:
                reply = cookie.reply(self._conn)
            except Exception as exc:
                raise OSError(f"XShmGetImage {w}x{h}+{x}+{y} failed: {exc}") from None
            if reply.size != 4 * w * h:
                raise OSError(f"XShmGetImage returned {reply.size} bytes for {w}x{h}: not 32 bits a pixel")
            frame[y:y + h, x:x + w] = self._pixels[offset:offset + 4 * w * h].reshape(h, w, 4)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._pixels = None  # type: ignore[assignment]
        try:
            self._buf.close()
        except BufferError:  # a view still alive: the mapping goes with it
            pass
        self._xcb.disconnect(conn)


def _clipped(rects: Sequence[Rect], width: int, height: int) -> list[Rect]:
    out = []
    for x, y, w, h in rects:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1 - x0, y1 - y0))
    return out
