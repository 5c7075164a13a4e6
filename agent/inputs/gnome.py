"""GNOME Wayland input backend: RFB key and pointer events through Mutter's RemoteDesktop session.

The session is the one the screen source opened (agent.capture.gnome_source):
absolute pointer motion is given in the coordinates of its ScreenCast stream.

* Keys: RFB keysyms go to ``NotifyKeyboardKeysym`` unchanged; Mutter finds
  the keycode and the Shift level in its own keymap (a keysym the keymap lacks,
  e.g. a Polish letter on a US layout, is dropped by Mutter with a warning in
  its log: there is no spare-keycode trick on Wayland). A repeated press
  without a release (the viewer's autorepeat) is sent as release + press, as
  Mutter ignores a second press of a held key.
* Buttons: RFB mask bits 1, 2, 3 and 8 are the evdev buttons BTN_LEFT,
  BTN_MIDDLE, BTN_RIGHT and BTN_SIDE, held while their bit is set.
* Wheel: bits 4-7 (up, down, left, right) are one ``NotifyPointerAxisDiscrete``
  step each per PointerEvent with the bit set, as RFB clients send them.

Mutter creates its virtual keyboard on the first key event, and keys sent
before the focused Wayland client has bound the new keyboard are lost (seen
on mutter 43 with no physical keyboard). So ``prepare()``, called by the
scope gate when the scope becomes ``control``, taps Shift_L (a press and
release that types nothing), well before the technician's first key; without
it, the first key does the same; a key within PRIME_SETTLE seconds of the tap
waits for the rest of that time. Nothing is
sent before the customer allowed control. (The first pointer motion is not
lost: a client sees it as the pointer entering its surface.)

Like the XTest backend, every key and button we press is remembered so
``release_all()`` lets go of all of them (scope dropped to view, session
ended), and keysyms are never logged. The pure planning functions at the top
need no compositor and are unit-tested on their own.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from agent.inputs.base import InputBackend, InputError

log = logging.getLogger(__name__)

XK_SHIFT_L = 0xFFE1
PRIME_SETTLE = 0.2  # seconds a new virtual keyboard needs before Wayland clients get its keys
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA = 0x110, 0x111, 0x112, 0x113, 0x114
AXIS_VERTICAL, AXIS_HORIZONTAL = 0, 1

# RFB button number (mask bit + 1) -> evdev button code, held while the bit is set
HOLD_BUTTONS: dict[int, int] = {1: BTN_LEFT, 2: BTN_MIDDLE, 3: BTN_RIGHT, 8: BTN_SIDE}
# RFB wheel button -> (axis, steps); positive steps scroll down / right
WHEEL_BUTTONS: dict[int, tuple[int, int]] = {4: (AXIS_VERTICAL, -1), 5: (AXIS_VERTICAL, 1),
                                             6: (AXIS_HORIZONTAL, -1), 7: (AXIS_HORIZONTAL, 1)}
HOLD_MASK = sum(1 << (b - 1) for b in HOLD_BUTTONS)

Event = tuple[str, int, int]  # ("button", evdev code, 1 down / 0 up) or ("axis", axis, steps)


def plan_buttons(held_mask: int, mask: int) -> list[Event]:
    """The button and wheel events that take the desktop from ``held_mask`` to the RFB ``mask``.

    Held buttons change first (presses and releases in button order), then
    one discrete wheel step per wheel bit set in ``mask``.
    """
    events: list[Event] = []
    for button, code in HOLD_BUTTONS.items():
        bit = 1 << (button - 1)
        if (held_mask ^ mask) & bit:
            events.append(("button", code, 1 if mask & bit else 0))
    for button, (axis, steps) in WHEEL_BUTTONS.items():
        if mask & (1 << (button - 1)):
            events.append(("axis", axis, steps))
    return events


def clamp_position(x: int, y: int, size: tuple[int, int]) -> tuple[int, int]:
    """An RFB position on the shared monitor (a viewer may send one past the edge)."""
    width, height = size
    return min(max(x, 0), max(width - 1, 0)), min(max(y, 0), max(height - 1, 0))


class GnomeInput(InputBackend):
    """Injects into the GNOME session through the RemoteDesktop session of ``source`` (a GnomeSource).

    The source owns the Mutter session; ``close()`` here releases what we hold
    and leaves the session to the source.
    """

    def __init__(self, source: Any) -> None:
        session = getattr(source, "session", None)
        if session is None or not getattr(session, "remote_desktop", False):
            raise InputError("the GNOME screen source was opened without a remote-desktop session: view only")
        self._source = source
        self._session = session
        self._pressed: list[int] = []  # keysyms held, in press order
        self._buttons = 0  # HOLD_BUTTONS currently down, as an RFB mask
        self._pos: tuple[int, int] | None = None
        self._closed = False
        self._primed = False
        self._primed_at = 0.0
        self._lock = threading.RLock()

    # --- InputBackend ---------------------------------------------------------
    def key(self, keysym: int, down: bool) -> None:
        keysym = int(keysym) & 0xFFFFFFFF
        if keysym == 0:
            return  # NoSymbol names no key
        with self._lock:
            self._check_open()
            if not down:
                if keysym in self._pressed:
                    self._pressed.remove(keysym)
                    self._notify("KeyboardKeysym", "(ub)", keysym, False)
                return  # a release we never pressed (or already released by release_all) is dropped
            self._prime()
            settle = self._primed_at + PRIME_SETTLE - time.monotonic()
            if settle > 0:  # the keyboard was created a moment ago: let the client bind it first
                time.sleep(settle)
            if keysym in self._pressed:  # autorepeat: Mutter ignores a press of a held key
                self._notify("KeyboardKeysym", "(ub)", keysym, False)
                self._pressed.remove(keysym)
            self._notify("KeyboardKeysym", "(ub)", keysym, True)
            self._pressed.append(keysym)

    def pointer(self, x: int, y: int, button_mask: int) -> None:
        with self._lock:
            self._check_open()
            pos = clamp_position(int(x), int(y), self._source.size)
            if pos != self._pos:
                self._notify("PointerMotionAbsolute", "(sdd)", self._session.stream_path, float(pos[0]),
                             float(pos[1]))
                self._pos = pos
            mask = int(button_mask) & 0xFF
            for kind, a, b in plan_buttons(self._buttons, mask):
                if kind == "button":
                    self._notify("PointerButton", "(ib)", a, bool(b))
                else:
                    self._notify("PointerAxisDiscrete", "(ui)", a, b)
            self._buttons = mask & HOLD_MASK

    def prepare(self) -> None:
        with self._lock:
            self._check_open()
            self._prime()

    def release_all(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                for keysym in reversed(self._pressed):
                    self._notify("KeyboardKeysym", "(ub)", keysym, False)
                for kind, code, _ in plan_buttons(self._buttons, 0):
                    self._notify("PointerButton", "(ib)", code, False)
            except InputError as exc:  # the session is gone: nothing is held any more either
                log.debug("release_all on a closed GNOME session: %s", exc)
            finally:
                self._pressed.clear()
                self._buttons = 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.release_all()
            self._closed = True

    # --- plumbing -------------------------------------------------------------
    @property
    def held(self) -> tuple[list[int], int]:
        """(keysyms held, RFB mask of held buttons): what release_all would let go of."""
        return list(self._pressed), self._buttons

    def _prime(self) -> None:
        """Make Mutter create its virtual keyboard with a key tap that types nothing (see the docstring)."""
        if not self._primed:
            self._notify("KeyboardKeysym", "(ub)", XK_SHIFT_L, True)
            self._notify("KeyboardKeysym", "(ub)", XK_SHIFT_L, False)
            self._primed = True
            self._primed_at = time.monotonic()

    def _check_open(self) -> None:
        if self._closed:
            raise InputError("the GNOME input backend is closed")

    def _notify(self, method: str, signature: str, *args: Any) -> None:
        from agent.errors import CaptureError

        try:
            self._session.notify(method, signature, *args)
        except CaptureError as exc:
            raise InputError(f"GNOME refused input ({method}): {exc}") from None

    def __repr__(self) -> str:
        return f"GnomeInput(stream={self._session.stream_path!r}, closed={self._closed})"
