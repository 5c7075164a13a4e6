# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Pixel format conversion kernels.

Frames are BGRA bytes; a client asks for any true-colour format. Encoders
work on pixel *values* (one uint32 per pixel, already in the client's
format) so palettes and runs are computed on exactly what the client will
see; only the last step lays values out as wire bytes. Decoders run the same
steps backwards. The wrapper that builds the lookup tables is
agent.encode.pixels.PixelCodec.
"""
from libc.stdint cimport uint8_t, uint32_t
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy

from agent._native.pixelio cimport Layout, get_px, make_layout, put_px


def bgra_to_values(const uint8_t[:, :, :] src, const uint32_t[::1] lut_r,
                   const uint32_t[::1] lut_g, const uint32_t[::1] lut_b,
                   uint32_t native_mask, uint32_t[:, ::1] out):
    """Convert BGRA pixels to pixel values.

    ``lut_x[c]`` is the 8-bit channel c already scaled and shifted into the
    client's format. ``native_mask`` != 0 means the value is the
    little-endian word of the BGRA bytes masked (the caller checked the host
    is little-endian), which skips the tables.
    """
    cdef Py_ssize_t h = src.shape[0], w = src.shape[1], y, x
    cdef Py_ssize_t s0 = src.strides[0], s1 = src.strides[1]
    cdef const uint8_t* base
    cdef const uint8_t* p
    cdef uint32_t v
    if src.shape[2] != 4:
        raise ValueError("source must be (h, w, 4) BGRA")
    if out.shape[0] != h or out.shape[1] != w:
        raise ValueError("output shape differs from source")
    if lut_r.shape[0] < 256 or lut_g.shape[0] < 256 or lut_b.shape[0] < 256:
        raise ValueError("lookup tables need 256 entries")
    if h == 0 or w == 0:
        return
    base = &src[0, 0, 0]
    with nogil:
        if native_mask != 0:
            for y in range(h):
                p = base + y * s0
                for x in range(w):
                    memcpy(&v, p, 4)
                    out[y, x] = v & native_mask
                    p += s1
        else:
            for y in range(h):
                p = base + y * s0
                for x in range(w):
                    out[y, x] = lut_b[p[0]] | lut_g[p[1]] | lut_r[p[2]]
                    p += s1


def values_to_bgra(const uint32_t[:, :] vals, const uint8_t[::1] lut_r,
                   const uint8_t[::1] lut_g, const uint8_t[::1] lut_b,
                   int red_shift, int green_shift, int blue_shift,
                   bint native, uint8_t[:, :, :] out):
    """Convert pixel values to BGRA with alpha 255.

    ``lut_x`` has max+1 entries mapping a channel value to 8 bits, so its
    length gives the channel mask. ``native`` means values are 0x00RRGGBB
    and the host is little-endian: one OR per pixel.
    """
    cdef Py_ssize_t h = vals.shape[0], w = vals.shape[1], y, x
    cdef Py_ssize_t s0 = out.strides[0], s1 = out.strides[1]
    cdef uint32_t rm, gm, bm, v, word
    cdef uint8_t* base
    cdef uint8_t* p
    if out.shape[0] != h or out.shape[1] != w or out.shape[2] != 4:
        raise ValueError("output must be (h, w, 4) matching the values")
    if red_shift < 0 or red_shift > 31 or green_shift < 0 or green_shift > 31 \
            or blue_shift < 0 or blue_shift > 31:
        raise ValueError("shifts must be 0..31")
    rm = <uint32_t>(lut_r.shape[0] - 1)
    gm = <uint32_t>(lut_g.shape[0] - 1)
    bm = <uint32_t>(lut_b.shape[0] - 1)
    for m in (lut_r.shape[0], lut_g.shape[0], lut_b.shape[0]):
        if m < 2 or m > 65536 or (m & (m - 1)):
            raise ValueError("lookup tables need 2^n entries (max + 1)")
    if h == 0 or w == 0:
        return
    base = &out[0, 0, 0]
    with nogil:
        if native:
            for y in range(h):
                p = base + y * s0
                for x in range(w):
                    word = vals[y, x] | <uint32_t>0xFF000000u
                    memcpy(p, &word, 4)
                    p += s1
        else:
            for y in range(h):
                p = base + y * s0
                for x in range(w):
                    v = vals[y, x]
                    p[0] = lut_b[(v >> blue_shift) & bm]
                    p[1] = lut_g[(v >> green_shift) & gm]
                    p[2] = lut_r[(v >> red_shift) & rm]
                    p[3] = 255
                    p += s1


def pack_values(const uint32_t[:, :] vals, layout):
    """The wire bytes of ``vals`` (row-major) per ``layout``, written straight into the bytes returned
    (no buffer to allocate and copy out: a typed key's update packs a palette or two)."""
    cdef Layout L
    cdef Py_ssize_t h = vals.shape[0], w = vals.shape[1], y, x
    cdef uint8_t* p
    make_layout(layout, &L)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, h * w * L.nbytes)
    if h * w == 0:
        return out
    p = <uint8_t*>PyBytes_AS_STRING(out)
    with nogil:
        for y in range(h):
            for x in range(w):
                put_px(p, vals[y, x], &L)
                p += L.nbytes
    return out


def unpack_values(const uint8_t[::1] data, layout, uint32_t[::1] out):
    """Read len(out) wire pixels per ``layout``; returns the bytes consumed."""
    cdef Layout L
    cdef Py_ssize_t count = out.shape[0], i, n
    cdef const uint8_t* p
    make_layout(layout, &L)
    n = count * L.nbytes
    if data.shape[0] < n:
        raise ValueError("not enough data")
    if count == 0:
        return 0
    p = &data[0]
    with nogil:
        for i in range(count):
            out[i] = get_px(p, &L)
            p += L.nbytes
    return n
