"""The screen-source interface every capture backend and workload implements.

Modelled on python-mss's small abstract base: ``grab``, ``size``, ``close``.
A frame is a numpy array (H, W, 4) uint8 in BGRA order, C-contiguous. It may be
a view into the source's own buffer, valid until the next ``grab()``: callers
that keep a frame copy it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import numpy as np

from agent.models import CursorShape



class ScreenSource(ABC):
    """A source of BGRA frames: a real display or a deterministic synthetic workload."""

    #: Short human description ("mss :0 1920x1080", "synthetic:typing 1280x720 seed=0").
    description: str = ""

    #: Which capture backend this is ("x11", "gnome"; "" for synthetic screens): probe and status show it.
    backend: str = ""

    #: True when every grab() returns a new array the source never writes again, so a caller may
    #: keep it as is. False: the source may reuse the buffer; copy what you keep.
    fresh_frames: bool = False

    @property
    @abstractmethod
    def size(self) -> tuple[int, int]:
        """Current (width, height). Changes when the display is resized."""

    @abstractmethod
    def grab(self) -> np.ndarray:
        """Capture the current screen as (H, W, 4) uint8 BGRA.

        A size change shows as a frame of the new size (and ``size`` updated);
        raises agent.errors.CaptureError when the display went away.
        """

    def cursor(self) -> CursorShape | None:
        """The current cursor shape, where the backend can read it."""
        return None

    def cursor_news(self) -> bool:
        """Whether the cursor changed shape since ``cursor()`` last read it, with nothing drawn on the screen
        (the pointer entering a text field): a capture loop sending it then needs no grab."""
        return False

    def close(self) -> None:
        """Release the display connection or buffers. Idempotent."""

    def __enter__(self) -> "ScreenSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
