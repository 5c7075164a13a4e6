"""Typed interface of agent/_native/decoders.pyx (client decode loops; negative returns are codes)."""
import numpy as np

Layout = tuple[int, int, int, int, int]

NEED_MORE: int
BAD_SUBRECT: int
NO_BACKGROUND: int
NO_FOREGROUND: int
BAD_SUBENCODING: int
BAD_INDEX: int
BAD_RUN: int

def hextile_decode(data: np.ndarray, layout: Layout, out: np.ndarray) -> int: ...
def zrle_decode(data: np.ndarray, layout: Layout, out: np.ndarray) -> int: ...
def rre_decode(data: np.ndarray, nsub: int, layout: Layout, out: np.ndarray) -> int: ...
def palette_expand(data: np.ndarray, bits: int, palette: np.ndarray, out: np.ndarray) -> int: ...
def gradient_unfilter(residual: np.ndarray, red_shift: int, green_shift: int, blue_shift: int,
                      red_max: int, green_max: int, blue_max: int, out: np.ndarray) -> None: ...
