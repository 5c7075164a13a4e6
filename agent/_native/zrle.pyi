"""Typed interface of agent/_native/zrle.pyx (ZRLE tile encoder)."""
import numpy as np

Layout = tuple[int, int, int, int, int]

def bound(w: int, h: int, cpixel_bytes: int) -> int: ...
def encode_tiles(v: np.ndarray, layout: Layout, out: np.ndarray) -> int: ...
