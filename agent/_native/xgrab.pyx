# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The X requests of a sub-image grab, made from C: XShmGetImage, and DAMAGE's region (agent.capture.xshm).

Why: a typed character costs one DamageSubtract + FetchRegion round trip and one
XShmGetImage. Through ctypes and mss's reply objects (argument conversion, a
reply wrapper with a finalizer, numpy's small calls to find the changed rows)
each cost the agent 0.1-0.15 ms of CPU per key, a sixth of all a key costs it,
where libxcb itself needs microseconds. Here the same requests go out from C,
with the GIL released while X answers and while rows are compared and copied.

libxcb is not linked at build time: ``Xcb`` takes the entry points' addresses
(from the libraries mss loaded), so building needs no X headers and the module
imports on machines without X. Replies are malloc'd by libxcb and freed here.
"""
from libc.stdint cimport int16_t, uint8_t, uint16_t, uint32_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy


cdef extern from "sys/uio.h":
    cdef struct iovec:
        void *iov_base
        size_t iov_len


ctypedef struct cookie_t:  # every xcb_*_cookie_t: one unsigned int
    unsigned int sequence

ctypedef cookie_t (*shm_get_image_t)(void *c, uint32_t drawable, int16_t x, int16_t y, uint16_t width,
                                     uint16_t height, uint32_t plane_mask, uint8_t format, uint32_t shmseg,
                                     uint32_t offset) noexcept nogil
ctypedef void *(*reply_t)(void *c, cookie_t cookie, void **error) noexcept nogil
ctypedef unsigned int (*send_request_t)(void *c, int flags, iovec *vector, const void *request) noexcept nogil
ctypedef void *(*request_check_t)(void *c, cookie_t cookie) noexcept nogil
ctypedef cookie_t (*fetch_region_t)(void *c, uint32_t region) noexcept nogil
ctypedef uint8_t *(*poll_for_event_t)(void *c) noexcept nogil

cdef enum:
    REQUEST_CHECKED = 1  # xcb_send_request's flag
    ALL_PLANES = 0xFFFFFFFF
    ZPIXMAP = 2
    FETCH_REPLY_HEADER = 32  # XFixesFetchRegion's reply: 32 bytes, then 8-byte rectangles
    SHM_REPLY_SIZE = 12  # the byte offset of xcb_shm_get_image_reply_t's ``size`` (after type, depth, sequence, length, visual)
    MAX_PENDING = 256  # requests in flight before their replies are collected


cdef struct Part:
    cookie_t cookie
    uint32_t offset
    int x, y, w, h


cdef class Xcb:
    """One X connection's libxcb entry points (addresses as ints: ``ctypes.cast(f, c_void_p).value``)."""

    cdef void *conn
    cdef send_request_t send_request
    cdef request_check_t request_check
    cdef fetch_region_t fetch_region
    cdef reply_t fetch_region_reply
    cdef shm_get_image_t shm_get_image
    cdef reply_t shm_get_image_reply
    cdef poll_for_event_t poll_for_event

    def __init__(self, uintptr_t conn, uintptr_t send_request, uintptr_t request_check, uintptr_t fetch_region,
                 uintptr_t fetch_region_reply, uintptr_t shm_get_image, uintptr_t shm_get_image_reply,
                 uintptr_t poll_for_event):
        if not (conn and send_request and request_check and fetch_region and fetch_region_reply and shm_get_image
                and shm_get_image_reply and poll_for_event):
            raise ValueError("a null X connection or libxcb entry point")
        self.conn = <void *>conn
        self.send_request = <send_request_t>send_request
        self.request_check = <request_check_t>request_check
        self.fetch_region = <fetch_region_t>fetch_region
        self.fetch_region_reply = <reply_t>fetch_region_reply
        self.shm_get_image = <shm_get_image_t>shm_get_image
        self.shm_get_image_reply = <reply_t>shm_get_image_reply
        self.poll_for_event = <poll_for_event_t>poll_for_event

    def events(self, uint8_t wanted):
        """Read every event X has sent (without blocking) and say whether one was of type ``wanted``
        (DAMAGE's DamageNotify: the connection selects no others; errors of unchecked requests end
        here too, ignored: the next grab reports a connection that broke)."""
        cdef uint8_t *event
        cdef bint seen = False
        with nogil:
            event = self.poll_for_event(self.conn)
            while event != NULL:
                seen = seen or (event[0] & 0x7F) == wanted
                free(event)
                event = self.poll_for_event(self.conn)
        return seen

    def take_damage(self, uintptr_t vector, uintptr_t request, uintptr_t body, size_t body_size, uint32_t region):
        """Send a prepared DamageSubtract into ``region`` (xshm._Raw.prepare_damage_request: ``vector`` is
        the iovec libxcb sends from, two spare ones before it; ``request`` its xcb_protocol_request_t;
        ``body`` its words), then FetchRegion, and return the region's rectangles as (x, y, w, h).

        OSError when either request fails (the DAMAGE object or the display is gone)."""
        cdef iovec *vec = <iovec *>vector
        cdef cookie_t subtract, fetch
        cdef void *err = NULL
        cdef uint8_t *reply
        cdef uint32_t count, i
        cdef int16_t x, y
        cdef uint16_t w, h
        if not (vector and request and body):
            raise ValueError("take_damage needs a prepared request")
        with nogil:
            vec[0].iov_base = <void *>body  # libxcb moved the iovec past what it sent last time
            vec[0].iov_len = body_size
            subtract.sequence = self.send_request(self.conn, REQUEST_CHECKED, vec, <const void *>request)
            fetch = self.fetch_region(self.conn, region)
            reply = <uint8_t *>self.fetch_region_reply(self.conn, fetch, &err)
        if err != NULL:
            free(reply)
            raise _x_error(err, "XFixesFetchRegion")
        if reply == NULL:
            raise OSError("XFixesFetchRegion failed: the X connection broke")
        out = []
        count = (<uint32_t *>(reply + 4))[0] // 2  # the reply's length field, in 4-byte units past its header
        for i in range(count):
            memcpy(&x, reply + FETCH_REPLY_HEADER + 8 * i, 2)
            memcpy(&y, reply + FETCH_REPLY_HEADER + 8 * i + 2, 2)
            memcpy(&w, reply + FETCH_REPLY_HEADER + 8 * i + 4, 2)
            memcpy(&h, reply + FETCH_REPLY_HEADER + 8 * i + 6, 2)
            out.append((x, y, w, h))
        free(reply)
        with nogil:
            err = self.request_check(self.conn, subtract)  # its reply came after ours: no round trip
        if err != NULL:
            raise _x_error(err, "DamageSubtract")
        return out

    def grab(self, uint8_t[:, :, ::1] frame, rects, const uint8_t[:, :, ::1] base, uint32_t drawable,
             uint32_t shmseg, uintptr_t segment, size_t segment_size):
        """Copy the screen's pixels of ``rects`` (clipped to ``frame``) into ``frame`` at the same places,
        through the shared segment at ``segment`` (``segment_size`` bytes, attached as ``shmseg``).

        With ``base`` (a frame equal to ``frame`` wherever this does not write) only rows that differ
        from it are written, and returned as (x, y, w, h) runs: exactly what changed (X's damage covers
        many rows that did not; and a one-frame capture's scratch frame is copy-on-write, where every
        page written counts). Without, all is
        written and the list returned is empty. Requests go back to back while they fit in the segment
        (a large rectangle in bands of rows). OSError if the server refuses one.
        """
        cdef Py_ssize_t height = frame.shape[0], width = frame.shape[1]
        cdef int x, y, w, h, x1, y1, band, top, rows, n = 0
        cdef size_t offset = 0, nbytes
        cdef Part *pending
        if frame.shape[2] != 4:
            raise ValueError("frame must be (H, W, 4)")
        if base is not None and (base.shape[0] != height or base.shape[1] != width or base.shape[2] != 4):
            raise ValueError("base must have frame's shape")
        if not segment or segment_size < 64:
            raise ValueError("no shared segment")
        written = []
        pending = <Part *>malloc(MAX_PENDING * sizeof(Part))
        if pending == NULL:
            raise MemoryError()
        try:
            for rect in rects:
                x, y, w, h = rect
                x1, y1 = min(x + w, width), min(y + h, height)
                x, y = max(x, 0), max(y, 0)
                if x1 <= x or y1 <= y:
                    continue
                w, h = x1 - x, y1 - y
                band = max(1, min(h, <int>(segment_size // (4 * w))))
                for top in range(y, y1, band):
                    rows = min(band, y1 - top)
                    nbytes = 4 * w * rows
                    if offset + nbytes > segment_size or n == MAX_PENDING:
                        self._collect(frame, base, pending, n, <const uint8_t *>segment, written)
                        n, offset = 0, 0
                    with nogil:
                        pending[n].cookie = self.shm_get_image(self.conn, drawable, x, top, w, rows,
                                                               ALL_PLANES, ZPIXMAP, shmseg, <uint32_t>offset)
                    pending[n].offset, pending[n].x, pending[n].y = <uint32_t>offset, x, top
                    pending[n].w, pending[n].h = w, rows
                    n += 1
                    offset += (nbytes + 63) & ~(<size_t>63)
            self._collect(frame, base, pending, n, <const uint8_t *>segment, written)
        finally:
            free(pending)
        return written

    cdef int _collect(self, uint8_t[:, :, ::1] frame, const uint8_t[:, :, ::1] base, Part *pending, int n,
                      const uint8_t *segment, list written) except -1:
        """Every pending reply, in order: its pixels into ``frame`` (changed rows only, with ``base``).
        All replies are read even after a failure, so none is left in libxcb's queue; the first raises."""
        cdef int i, r, start
        cdef void *err
        cdef uint8_t *reply
        cdef uint32_t size
        cdef Part part
        cdef uint8_t *changed
        cdef const uint8_t *src
        failure = None
        for i in range(n):
            part = pending[i]
            err = NULL
            with nogil:
                reply = <uint8_t *>self.shm_get_image_reply(self.conn, part.cookie, &err)
            if err != NULL or reply == NULL:
                free(reply)
                if failure is None:
                    failure = (_x_error(err, "XShmGetImage %dx%d+%d+%d" % (part.w, part.h, part.x, part.y))
                               if err != NULL else OSError("XShmGetImage failed: the X connection broke"))
                elif err != NULL:
                    free(err)
                continue
            memcpy(&size, reply + SHM_REPLY_SIZE, 4)
            free(reply)
            if failure is not None:
                continue
            if size != <uint32_t>(4 * part.w * part.h):
                failure = OSError(f"XShmGetImage returned {size} bytes for {part.w}x{part.h}: not 32 bits a pixel")
                continue
            src = segment + part.offset
            if base is None:  # a whole grab into a fresh buffer: comparing first would only add a read
                with nogil:
                    for r in range(part.h):
                        memcpy(&frame[part.y + r, part.x, 0], src + 4 * part.w * r, 4 * part.w)
                continue
            changed = <uint8_t *>malloc(part.h)
            if changed == NULL:
                raise MemoryError()
            with nogil:
                for r in range(part.h):
                    changed[r] = memcmp(&base[part.y + r, part.x, 0], src + 4 * part.w * r, 4 * part.w) != 0
                    if changed[r]:
                        memcpy(&frame[part.y + r, part.x, 0], src + 4 * part.w * r, 4 * part.w)
            start = -1
            for r in range(part.h + 1):
                if r < part.h and changed[r]:
                    if start < 0:
                        start = r
                elif start >= 0:
                    written.append((part.x, part.y + start, part.w, r - start))
                    start = -1
            free(changed)
        if failure is not None:
            raise failure
        return 0


cdef object _x_error(void *err, str what):
    """OSError naming ``what`` and the X error code of the xcb_generic_error_t at ``err`` (freed here)."""
    cdef uint8_t code = (<uint8_t *>err)[1]
    free(err)
    return OSError(f"{what} failed: X error {code}")
