"""The input backend interface: where the technician's keys and pointer land.

Small on purpose (python-mss style) so Windows and macOS backends can follow
the X11 XTest one. The session, not the backend, decides whether input is
allowed (consent scope); a backend only injects.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from agent.errors import CaptureError


class InputError(CaptureError):
    """The input backend cannot inject (display gone, extension missing); exit code 5 at the CLI."""


class InputBackend(ABC):
    """Injects RFB KeyEvent / PointerEvent semantics into the local desktop."""

    #: False when every event is dropped (view-only, a gate closed by the consent scope).
    allows_input: bool = True

    @abstractmethod
    def key(self, keysym: int, down: bool) -> None:
        """Press or release the key for an X11 keysym (RFB KeyEvent)."""

    @abstractmethod
    def pointer(self, x: int, y: int, button_mask: int) -> None:
        """Move to (x, y) and set buttons 1..8 from the RFB mask (bit 0 = button 1; 4..7 wheel)."""

    def prepare(self) -> None:
        """Input is about to be allowed (the scope became ``control``): set up what the first event needs."""

    @abstractmethod
    def release_all(self) -> None:
        """Release every key and button this backend pressed: no stuck modifiers."""

    def close(self) -> None:
        """Release everything and drop the display connection. Idempotent."""
        self.release_all()


class NullInput(InputBackend):
    """Drops all input: view-only sessions and synthetic screens."""

    allows_input = False

    def key(self, keysym: int, down: bool) -> None:
        pass

    def pointer(self, x: int, y: int, button_mask: int) -> None:
        pass

    def release_all(self) -> None:
        pass
