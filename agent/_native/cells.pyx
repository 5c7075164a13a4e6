# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""A terminal's character cells from palette indices: the fixed pitch and where cells start.

agent.encode.text_cells calls this once for every indexed rectangle below
the channel's zstd; in numpy it was about a quarter of encoding a page of
text (22 pages of ``less`` replayed: 0.92 ms a page of 3.96). The rule is
that module's; tests/support/reference.py holds it in numpy, and the
property tests hold the two equal.
"""
from libc.stdint cimport int64_t, uint8_t


def find_cells(const uint8_t[:, :] indices, Py_ssize_t x, int likely, int min_pitch, int max_pitch,
               double blank_share, int min_cells, int min_ink_rows):
    """(pitch, where cells start modulo the pitch, in screen columns), or None.

    The background is the most common index among every 4th pixel of every
    4th row (the smallest on a tie); a column's ink is its pixels that
    differ from it. Pitches are tried ``likely`` first (when > 0), then
    ``min_pitch`` to ``max_pitch``; the first whose emptiest phase of
    columns holds under ``blank_share`` of an average phase's ink wins, and
    its cells start one column after that phase. None when the rectangle is
    narrower than ``min_cells`` cells of ``max_pitch``, lower than
    ``min_pitch`` rows, or holds under ``min_ink_rows`` rows' worth of ink.
    """
    cdef Py_ssize_t rows = indices.shape[0], width = indices.shape[1], r, c, whole, i
    if min_pitch < 1 or max_pitch < min_pitch or max_pitch > 64 or likely > 64 or x < 0:
        raise ValueError("pitches must lie in 1..64, and x must not be negative")
    if width < <Py_ssize_t>min_cells * max_pitch or rows < min_pitch:
        return None
    cdef int64_t hist[256]
    cdef int64_t per_phase[64]
    cdef int64_t total = 0
    cdef int background = 0, pitch, tries, phase, blank, found = 0, start = 0
    ink_buf = bytearray(width * sizeof(int64_t))
    cdef int64_t* ink = <int64_t*><char*>ink_buf
    cdef uint8_t bg
    cdef const uint8_t* row
    cdef Py_ssize_t step = indices.strides[1]
    with nogil:
        for i in range(256):
            hist[i] = 0
        for r in range(0, rows, 4):
            for c in range(0, width, 4):
                hist[indices[r, c]] += 1
        for i in range(1, 256):
            if hist[i] > hist[background]:
                background = <int>i
        bg = <uint8_t>background
        for c in range(width):
            ink[c] = 0
        for r in range(rows):
            row = &indices[r, 0]
            if step == 1:  # the encoder's own index maps: a loop the compiler vectorises
                for c in range(width):
                    ink[c] += row[c] != bg
            else:
                for c in range(width):
                    ink[c] += row[c * step] != bg
        for c in range(width):
            total += ink[c]
    if total < <int64_t>min_ink_rows * rows:
        return None
    with nogil:
        for tries in range(max_pitch - min_pitch + 2):
            if tries == 0:
                if likely <= 0:
                    continue
                pitch = likely
            else:
                pitch = min_pitch + tries - 1
            for phase in range(pitch):
                per_phase[phase] = 0
            whole = width // pitch * pitch
            total = 0
            phase = <int>(x % pitch)
            for c in range(whole):
                per_phase[phase] += ink[c]
                total += ink[c]
                phase += 1
                if phase == pitch:
                    phase = 0
            blank = 0
            for phase in range(1, pitch):
                if per_phase[phase] < per_phase[blank]:
                    blank = phase
            if <double>per_phase[blank] < blank_share * (<double>total / pitch):
                found, start = pitch, (blank + 1) % pitch
                break
    return (found, start) if found else None
