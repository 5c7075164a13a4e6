"""Typed interface of agent/_native/rre.pyx (RRE encoder)."""
import numpy as np

Layout = tuple[int, int, int, int, int]

def encode(v: np.ndarray, bg: int, layout: Layout, out: np.ndarray, limit: int) -> int: ...
