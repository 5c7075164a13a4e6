# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Tight encoder kernels: 1-bit mono rows and the gradient filter.

Byte layouts follow the Tight spec (rfbproto) and TigerVNC's TightEncoder:
mono rows are padded to whole bytes, most significant bit leftmost, bit 1
meaning "not the background" (palette entry 1).
"""
from libc.stdint cimport int32_t, uint8_t, uint32_t

from agent._native.pixelio cimport Channels, gradient_px, make_channels


def pack_mono(const uint32_t[:, :] v, uint32_t bg, uint8_t[::1] out):
    """Pack a two-colour rectangle into 1-bit rows; returns the byte count."""
    cdef Py_ssize_t h = v.shape[0], w = v.shape[1], y, x, rowbytes, n
    cdef uint8_t* p
    cdef uint32_t acc
    cdef int bit
    rowbytes = (w + 7) // 8
    n = rowbytes * h
    if out.shape[0] < n:
        raise ValueError("output buffer too small")
    if n == 0:
        return 0
    p = &out[0]
    with nogil:
        for y in range(h):
            acc = 0
            bit = 7
            for x in range(w):
                if v[y, x] != bg:
                    acc |= 1u << bit
                if bit == 0:
                    p[0] = <uint8_t>acc
                    p += 1
                    acc = 0
                    bit = 7
                else:
                    bit -= 1
            if bit != 7:
                p[0] = <uint8_t>acc
                p += 1
    return n


def gradient_filter(const uint32_t[:, :] v, int red_shift, int green_shift, int blue_shift,
                    int red_max, int green_max, int blue_max, uint32_t[:, ::1] out):
    """The Tight gradient filter: each channel minus its prediction, modulo max + 1.

    Prediction = left + above - above-left, clamped to 0..max, with pixels
    outside the rectangle taken as 0 (rfbproto). Decoding adds it back
    (agent/_native/decoders.pyx gradient_unfilter; both use pixelio.gradient_px).
    """
    cdef Py_ssize_t h = v.shape[0], w = v.shape[1], y, x
    cdef Channels ch
    if out.shape[0] != h or out.shape[1] != w:
        raise ValueError("output shape differs from input")
    make_channels(&ch, red_shift, green_shift, blue_shift, red_max, green_max, blue_max)
    with nogil:
        for y in range(h):
            for x in range(w):
                out[y, x] = gradient_px(v[y, x], v[y, x - 1] if x > 0 else 0, v[y - 1, x] if y > 0 else 0,
                                        v[y - 1, x - 1] if x > 0 and y > 0 else 0, &ch, -1)
