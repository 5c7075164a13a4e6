"""Sub-image capture over MIT-SHM: XShmGetImage of just the rectangles X DAMAGE reported.

mss grabs the whole root window and copies it into a new bytearray per shot:
33 MB allocated, faulted in and copied at 3840x2160 for a typed character.
Here one small shared segment (``SEGMENT_BYTES``, not a screen's worth) is
reused for every request: damaged rectangles are requested back to back at
different offsets (one round trip for all of them), a large rectangle goes in
bands of rows, and each result is copied straight into the caller's frame
buffer at its place; given the previous frame, only the rows that differ from
it (agent._native.xgrab, with the GIL released).

Set up with mss's own XCB bindings (mss.linux.xcb, mss >= 10.2), on a
connection of our own; the requests of every grab then go out from C
(agent._native.xgrab, through the same libxcb), where ctypes and mss's reply
objects cost more CPU than the grab itself. ``XShmGrabber.open`` returns None
wherever that is not possible (older mss, no MIT-SHM, a remote display, an
unusual pixel layout) and the caller keeps mss's full-frame path.

The same connection can also move X DAMAGE's accumulated region out of the
server (``use_damage`` then ``take_damage``): DamageSubtract into an XFixes
region and FetchRegion, sent right before the XShmGetImage requests. One
connection orders them (no sync needed for the reset to precede the grab),
and the reply is read in C: python-xlib's send_and_recv, pselect and
per-rectangle parsing cost more than the grab itself (~0.1 ms a typed
character, ~1 ms a frame of a terminal printing text).
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
from typing import Any, Optional, Sequence

import numpy as np

from agent._native import xgrab as _xgrab

log = logging.getLogger(__name__)

Rect = tuple[int, int, int, int]

# 2 MiB: 136 rows of a 3840-pixel screen per request. The segment is resident in every agent; larger
# grabs take one more round trip per 2 MiB (a whole 1080p screen four).
SEGMENT_BYTES = 2 << 20
# xcb_send_request flags; DAMAGE minor opcodes (damageproto)
_REQUEST_CHECKED = 1
_DAMAGE_QUERY_VERSION, _DAMAGE_CREATE, _DAMAGE_DESTROY, _DAMAGE_SUBTRACT = 0, 1, 2, 3
_DAMAGE_NOTIFY, _REPORT_NON_EMPTY = 0, 3  # DamageNotify's code past the extension's first event; DamageCreate's level


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Extension(ctypes.Structure):  # xcb_extension_t: libxcb fills global_id on first use
    _fields_ = [("name", ctypes.c_char_p), ("global_id", ctypes.c_int)]


class _ProtocolRequest(ctypes.Structure):  # xcb_protocol_request_t
    _fields_ = [("count", ctypes.c_size_t), ("ext", ctypes.POINTER(_Extension)),
                ("opcode", ctypes.c_uint8), ("isvoid", ctypes.c_uint8)]


class _QueryExtensionReply(ctypes.Structure):  # the head of xcb_query_extension_reply_t
    _fields_ = [("response_type", ctypes.c_uint8), ("pad0", ctypes.c_uint8), ("sequence", ctypes.c_uint16),
                ("length", ctypes.c_uint32), ("present", ctypes.c_uint8), ("major_opcode", ctypes.c_uint8),
                ("first_event", ctypes.c_uint8), ("first_error", ctypes.c_uint8)]


_DAMAGE_EXTENSION = _Extension(b"DAMAGE", 0)  # lives as long as the process: libxcb keeps a pointer to it


class _Raw:
    """libxcb entry points with signatures of our own (new CDLL handles, so mss's stay untouched).

    libxcb has no DAMAGE binding installed everywhere (libxcb-damage is often
    missing), so DAMAGE requests go through ``xcb_send_request``.
    """

    def __init__(self, xcb_mod: Any) -> None:
        lib = xcb_mod.LIB
        x = ctypes.CDLL(lib.xcb._name)
        fx = ctypes.CDLL(lib.xfixes._name)
        self.shm = ctypes.CDLL(lib.shm._name)
        self.libc_free = ctypes.CDLL(None).free
        self.libc_free.argtypes, self.libc_free.restype = [ctypes.c_void_p], None
        vp, cp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        self.send_request = x.xcb_send_request
        self.send_request.argtypes = [vp, ctypes.c_int, vp, ctypes.POINTER(_ProtocolRequest)]
        self.send_request.restype = ctypes.c_uint
        self.wait_for_reply = x.xcb_wait_for_reply
        self.wait_for_reply.argtypes, self.wait_for_reply.restype = [vp, ctypes.c_uint, cp], vp
        self.request_check = x.xcb_request_check  # the cookie is a struct of one unsigned int
        self.request_check.argtypes, self.request_check.restype = [vp, ctypes.c_uint], vp
        self.get_extension_data = x.xcb_get_extension_data
        self.get_extension_data.argtypes = [vp, ctypes.POINTER(_Extension)]
        self.get_extension_data.restype = ctypes.POINTER(_QueryExtensionReply)
        self.get_file_descriptor = x.xcb_get_file_descriptor
        self.get_file_descriptor.argtypes, self.get_file_descriptor.restype = [vp], ctypes.c_int
        self.poll_for_event = x.xcb_poll_for_event
        self.generate_id = x.xcb_generate_id
        self.generate_id.argtypes, self.generate_id.restype = [vp], ctypes.c_uint32
        self.create_region = fx.xcb_xfixes_create_region_checked
        self.create_region.argtypes = [vp, ctypes.c_uint32, ctypes.c_uint32, vp]
        self.create_region.restype = ctypes.c_uint
        self.fetch_region = fx.xcb_xfixes_fetch_region
        self.fetch_region.argtypes, self.fetch_region.restype = [vp, ctypes.c_uint32], ctypes.c_uint
        self.fetch_region_reply = fx.xcb_xfixes_fetch_region_reply
        self.fetch_region_reply.argtypes, self.fetch_region_reply.restype = [vp, ctypes.c_uint, cp], vp

    def damage_request(self, conn: Any, minor: int, words: Sequence[int], checked: bool) -> int:
        """Send a DAMAGE request (``words``: its CARD32 fields); returns its sequence number (0: failed)."""
        body, vec, first, req = self.prepare_damage_request(minor, words)
        vec[2].iov_base, vec[2].iov_len = ctypes.addressof(body), ctypes.sizeof(body)
        return self.send_request(conn, _REQUEST_CHECKED if checked else 0, first, ctypes.byref(req))

    @staticmethod
    def prepare_damage_request(minor: int, words: Sequence[int]) -> tuple[Any, ...]:
        """A DAMAGE request's structures (body, iovecs, the first iovec's address, request), kept for a
        request sent many times (xgrab.Xcb.take_damage points the iovec at the body before each send)."""
        body = (ctypes.c_uint32 * (1 + len(words)))(0, *words)  # header: libxcb writes opcodes and length
        vec = (_Iovec * 3)()  # libxcb wants two spare iovecs before the first one it sends
        req = _ProtocolRequest(1, ctypes.pointer(_DAMAGE_EXTENSION), minor, 0 if minor == _DAMAGE_QUERY_VERSION else 1)
        return body, vec, ctypes.addressof(vec) + 2 * ctypes.sizeof(_Iovec), req

    def native(self, conn: int) -> _xgrab.Xcb:
        """The C side of grabs and damage (agent._native.xgrab) on the connection at address ``conn``."""
        def address(function: Any) -> int:
            return ctypes.cast(function, ctypes.c_void_p).value or 0

        return _xgrab.Xcb(conn, address(self.send_request), address(self.request_check), address(self.fetch_region),
                          address(self.fetch_region_reply), address(self.shm.xcb_shm_get_image),
                          address(self.shm.xcb_shm_get_image_reply), address(self.poll_for_event))

    def reply(self, conn: Any, sequence: int, what: str) -> int:
        """Wait for the reply to ``sequence``: its address (free it with ``libc_free``); OSError on an X error."""
        err = ctypes.c_void_p()
        reply = self.wait_for_reply(conn, sequence, ctypes.byref(err))
        if err.value:
            if reply:
                self.libc_free(reply)
            self._raise_x_error(err.value, what)
        if not reply:
            raise OSError(f"{what} failed: the X connection broke")
        return reply

    def check(self, conn: Any, sequence: int, what: str) -> None:
        """OSError if the checked void request ``sequence`` failed (no round trip once a later reply came)."""
        err = self.request_check(conn, sequence)
        if err:
            self._raise_x_error(err, what)

    def _raise_x_error(self, err: int, what: str) -> None:
        """Free the xcb_generic_error_t at ``err`` and raise OSError naming ``what`` and the X error code."""
        code = ctypes.string_at(err, 2)[1]
        self.libc_free(err)
        raise OSError(f"{what} failed: X error {code}")


class XShmGrabber:
    """Grabs rectangles of the root window of ``display`` into a BGRA frame buffer."""

    def __init__(self, xcb: Any, conn: Any, root: Any, segment: Any, buf: mmap.mmap, size: int) -> None:
        self._xcb, self._conn, self._buf = xcb, conn, buf
        self._pixels = np.frombuffer(buf, np.uint8)  # the whole segment (kept: its address is the C side's)
        self._raw = _Raw(xcb)
        self._address = ctypes.addressof(conn)  # mss's Connection structure, as an address for our calls
        self._native = self._raw.native(self._address)
        self._fileno = int(self._raw.get_file_descriptor(self._address))  # asked before every wait: kept
        self._grab_args = (root.value, segment.value, self._pixels.ctypes.data, size)
        self._damage_first_event: Optional[int] = None  # DAMAGE negotiated on this connection: its first event
        self._damage_ready = False
        # the DamageSubtract into our XFixes region, built once, and the addresses xgrab.Xcb.take_damage sends it from
        self._subtract: tuple[Any, ...] = ()
        self._subtract_args: tuple[int, ...] = ()
        self.owns_damage = False  # the DAMAGE object is ours (own_damage): its events come here
        self._damage_event = 0  # their type

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
            return cls(xcb, conn, screen.root, segment, buf, size)
        except Exception as exc:
            log.info("no XShm sub-image capture: %s", exc)
            xcb.disconnect(conn)
            return None

    def own_damage(self) -> bool:
        """Make a DAMAGE object (level non-empty) on this connection and take its region from now on.

        Its events (one each time the region stops being empty) then come here, where ``damage_events``
        reads them in C, instead of to python-xlib, whose read and parse of one cost about 0.15 ms of
        CPU per typed key. False (logged) when the server refuses; nothing changed then.
        """
        if self._conn is None:
            return False
        raw, conn = self._raw, self._address
        try:
            event = self._negotiate_damage() + _DAMAGE_NOTIFY
            damage = raw.generate_id(conn)
            create = raw.damage_request(conn, _DAMAGE_CREATE, (damage, self._grab_args[0], _REPORT_NON_EMPTY), True)
            raw.check(conn, create, "DamageCreate")
        except Exception as exc:
            log.info("DAMAGE stays on python-xlib's connection: %s", exc)
            return False
        if not self.use_damage(damage):
            # a DAMAGE object nobody subtracts from still makes X track every drawing on the screen
            with contextlib.suppress(Exception):
                raw.check(conn, raw.damage_request(conn, _DAMAGE_DESTROY, (damage,), True), "DamageDestroy")
            return False
        self.owns_damage, self._damage_event = True, event
        return True

    def damage_events(self) -> bool:
        """Whether X reported drawing since the last call (``own_damage``): its events, read without blocking."""
        return self.owns_damage and self._conn is not None and self._native.events(self._damage_event)

    def fileno(self) -> int:
        """The connection's socket: readable when X sent something (DAMAGE's events, with ``own_damage``)."""
        return self._fileno

    def _negotiate_damage(self) -> int:
        """DAMAGE's QueryVersion on this connection (the protocol wants it before any other DAMAGE request),
        once; returns the extension's first event code. OSError when the server has no DAMAGE."""
        if self._damage_first_event is None:
            raw, conn = self._raw, self._address
            ext = raw.get_extension_data(conn, ctypes.byref(_DAMAGE_EXTENSION))
            if not ext or not ext.contents.present:
                raise OSError("no DAMAGE extension")
            first_event = ext.contents.first_event
            raw.libc_free(raw.reply(conn, raw.damage_request(conn, _DAMAGE_QUERY_VERSION, (1, 1), True),
                                    "DamageQueryVersion"))
            self._damage_first_event = first_event
        return self._damage_first_event

    def use_damage(self, damage: int) -> bool:
        """Take the region of the DAMAGE object ``damage`` (made on another connection, or ours: ``own_damage``)
        on this one from now on.

        Negotiates DAMAGE and XFixes >= 2 on this connection, makes the region,
        and tries one checked DamageSubtract; False (logged) when any of that
        fails, and the caller keeps reading the damage its own way.
        """
        if self._conn is None:
            return False
        try:
            raw, conn = self._raw, self._address
            self._negotiate_damage()
            if self._xcb.xfixes_query_version(self._conn, 5, 0).major_version < 2:
                raise OSError("XFixes older than 2 (no regions)")
            region = raw.generate_id(conn)
            raw.check(conn, raw.create_region(conn, region, 0, None), "XFixesCreateRegion")
            self._subtract = body, _, first, req = raw.prepare_damage_request(_DAMAGE_SUBTRACT, (damage, 0, region))
            self._subtract_args = (first, ctypes.addressof(req), ctypes.addressof(body), ctypes.sizeof(body), region)
            self._damage_ready = True
            self.take_damage()
        except Exception as exc:
            log.info("DAMAGE read over python-xlib, not the capture connection: %s", exc)
            self._damage_ready = False
            return False
        return True

    @property
    def damage_ready(self) -> bool:
        """Whether ``take_damage`` works (``use_damage`` succeeded)."""
        return self._damage_ready and self._conn is not None

    def take_damage(self) -> list[Rect]:
        """Move the damage so far into our region and return its rectangles; call right before ``grab``.

        DamageSubtract and FetchRegion travel on this connection ahead of the
        grab's requests, so the server resets the damage before it reads the
        pixels: drawing that races the grab is both captured and reported again.
        OSError when the server refuses (the DAMAGE object or the display is gone).
        """
        if not self.damage_ready:
            raise OSError("take_damage without use_damage")
        return self._native.take_damage(*self._subtract_args)

    def grab(self, frame: np.ndarray, rects: Sequence[Rect], base: Optional[np.ndarray] = None) -> list[Rect]:
        """Copy the screen's pixels of ``rects`` (clipped to ``frame``) into ``frame`` at the same places.

        With ``base`` (a frame equal to ``frame`` wherever this does not write), rows are compared with
        it and only the rows that differ are written, and returned as rectangles: exactly what changed.
        Without, everything is written and the list returned is empty.
        Requests are pipelined while they fit in the segment; OSError if the server refuses one.
        """
        if self._conn is None:
            raise OSError("the grabber was closed")
        return self._native.grab(frame, rects, base, *self._grab_args)

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

