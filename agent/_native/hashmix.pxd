# cython: language_level=3
"""The 64-bit mixing shared by the tile and row hash kernels.

Segment hash: the pixels of a row segment are read as native-endian 64-bit
words (two BGRA pixels each, low pixel first on the little-endian hosts we
support; an odd last pixel is zero-extended), and the hash
is the sum mod 2**64 of ``mix(word ^ ((index + 1) * GOLDEN))``, where ``mix``
is the splitmix64 finaliser. The finaliser is a bijection, so a change of any
single word always changes the sum; the sum has no dependency chain, so the
loop runs at the multiplier's throughput. tests/reference.py computes the same
numbers with numpy.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t word_key(uint64_t index) noexcept nogil:
    return (index + 1) * <uint64_t>0x9E3779B97F4A7C15ULL


cdef inline uint64_t segment_hash(const uint8_t* p, Py_ssize_t npix, uint64_t first_index) noexcept nogil:
    """Sum of mixed words of ``npix`` BGRA pixels at ``p``; word i is keyed by first_index + i."""
    cdef uint64_t acc0 = 0, acc1 = 0, w0, w1
    cdef uint32_t last
    cdef Py_ssize_t nwords = npix >> 1
    cdef Py_ssize_t i = 0
    # Two independent accumulators keep both multipliers busy.
    while i + 1 < nwords:
        memcpy(&w0, p + 8 * i, 8)
        memcpy(&w1, p + 8 * i + 8, 8)
        acc0 += mix64(w0 ^ word_key(first_index + i))
        acc1 += mix64(w1 ^ word_key(first_index + i + 1))
        i += 2
    if i < nwords:
        memcpy(&w0, p + 8 * i, 8)
        acc0 += mix64(w0 ^ word_key(first_index + i))
        i += 1
    if npix & 1:
        memcpy(&last, p + 8 * nwords, 4)
        acc1 += mix64((<uint64_t>last) ^ word_key(first_index + nwords))
    return acc0 + acc1
