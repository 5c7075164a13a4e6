# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""A byte matrix laid out in vertical stripes (agent.secure.stripes): one call and one copy.

A typed key's glyph goes through here once per update; as numpy (a view, two reshapes, a transpose
and three ``tobytes``) it was eight calls, each costing microseconds with the agent's caches cold
between keys. tests/support/reference.py keeps the numpy version the property tests compare with.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy


def to_stripes(const unsigned char[::1] matrix, Py_ssize_t width, Py_ssize_t stripe, Py_ssize_t first):
    """``matrix`` (row-major, ``width`` wide; the caller checked it is whole) in stripes of ``stripe``
    columns, each top to bottom, left to right: the first ``first`` columns wide, the last what is left."""
    cdef Py_ssize_t size = matrix.shape[0]
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    if size == 0:
        return out
    cdef unsigned char* dst = <unsigned char*>PyBytes_AS_STRING(out)
    cdef const unsigned char* src = &matrix[0]
    cdef Py_ssize_t rows = size // width
    cdef Py_ssize_t full = first + (width - first) // stripe * stripe
    cdef Py_ssize_t rest = width - full
    cdef Py_ssize_t r, s, pos = 0
    with nogil:
        if first:
            for r in range(rows):
                memcpy(dst + pos, src + r * width, first)
                pos += first
        s = first
        while s < full:
            for r in range(rows):
                memcpy(dst + pos, src + r * width + s, stripe)
                pos += stripe
            s += stripe
        if rest:
            for r in range(rows):
                memcpy(dst + pos, src + r * width + full, rest)
                pos += rest
    return out
