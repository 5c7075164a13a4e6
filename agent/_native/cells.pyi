"""Typed interface of agent/_native/cells.pyx (a terminal's character cells)."""
import numpy as np

def find_cells(indices: np.ndarray, x: int, likely: int, min_pitch: int, max_pitch: int, blank_share: float,
               min_cells: int, min_ink_rows: int) -> tuple[int, int] | None: ...
