"""Typed interface of agent/_native/hextile.pyx (Hextile encoder)."""
import numpy as np

Layout = tuple[int, int, int, int, int]

def bound(w: int, h: int, bytes_per_pixel: int) -> int: ...
def encode(v: np.ndarray, layout: Layout, out: np.ndarray) -> int: ...
