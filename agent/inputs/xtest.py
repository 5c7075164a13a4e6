"""X11 input backend: RFB key and pointer events injected with the XTEST extension.

Keys: RFB sends keysyms, X wants keycodes. ``Keymap.choose`` (keysyms.py)
picks the keycode and the Shift state that produce the keysym; we press a
fake Shift around the key when the keymap has the symbol at the shifted level
and the client does not hold Shift, and lift the held Shift keys around it in
the reverse case. A keysym the keymap lacks (a Polish letter on a US map, a
Greek letter) is bound to a spare keycode with ChangeKeyboardMapping, as
x11vnc does, from a small pool reused least recently used first; the spare
keycodes get their empty mapping back on ``close()``.

Every key and button we press is remembered, so ``release_all()`` can let go
of all of them when the session ends or the scope drops to view. We never log
keysyms: they are what the technician types, passwords included.

The X connection is used from one thread at a time (an RLock guards it).
"""
from __future__ import annotations

import gc
import logging
import os
import threading
import warnings
from collections import OrderedDict
from typing import Any, Callable, TypeVar

from agent.inputs.base import InputBackend, InputError
from agent.inputs.keysyms import NO_SYMBOL, SHIFT_MASK, Keymap

try:
    from Xlib import X
    from Xlib import error as xerror
    from Xlib.display import Display
    from Xlib.ext import xtest  # noqa: F401  (registers xtest_fake_input on Display)
except ImportError as exc:  # pragma: no cover - python-xlib is a dependency
    raise InputError("python-xlib is not installed: pip install python-xlib") from exc

log = logging.getLogger(__name__)

SPARE_POOL_SIZE = 8
"""Spare keycodes we may rebind; more distinct missing keysyms reuse the least recently used one."""

HOLD_BUTTONS = (1, 2, 3, 8)
"""Buttons that stay down while their RFB mask bit is set."""
WHEEL_BUTTONS = (4, 5, 6, 7)
"""Wheel steps: one press and release per PointerEvent with the bit set, as RFB clients send them."""

_HOLD_MASK = sum(1 << (b - 1) for b in HOLD_BUTTONS)
_X_ERRORS = (xerror.ConnectionClosedError, xerror.XError, OSError)

T = TypeVar("T")


def _open_display(name: str) -> Display:
    failure = ""
    # python-xlib does not close the socket of a failed connect; collect it here, quietly,
    # instead of leaving a ResourceWarning to surface at some later, unrelated moment.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return Display(name)
        except (xerror.DisplayError, *_X_ERRORS) as exc:
            failure = str(exc) or type(exc).__name__
        gc.collect()
    raise InputError(f"cannot open X display {name}: {failure}")


class XTestInput(InputBackend):
    """Injects into an X display through XTEST; ``display`` defaults to $DISPLAY."""

    def __init__(self, display: str | None = None) -> None:
        name = display or os.environ.get("DISPLAY") or ""
        if not name:
            raise InputError("no X display to send input to: set DISPLAY or pass --display :N")
        self.display_name = name
        self._d = _open_display(name)
        try:
            if self._d.query_extension("XTEST") is None:
                raise InputError(f"X display {name} has no XTEST extension: input cannot be injected "
                                 "(start the X server with +extension XTEST)")
            self._d.set_error_handler(self._on_x_error)
            screen = self._d.screen()
            self._root = screen.root
            self._width, self._height = screen.width_in_pixels, screen.height_in_pixels
            self._root.change_attributes(event_mask=X.StructureNotifyMask)  # size changes
            self._keymap = self._load_keymap()
        except InputError:
            self._d.close()
            raise
        except _X_ERRORS as exc:
            self._d.close()
            raise InputError(f"X display {name} failed during setup: {type(exc).__name__}") from exc
        self._spares = self._keymap.spare_keycodes()[:SPARE_POOL_SIZE]
        self._bound: OrderedDict[int, int] = OrderedDict()  # keysym -> spare keycode, LRU order
        self._pressed: dict[int, int] = {}  # keysym held by the client -> keycode we pressed
        self._buttons = 0  # HOLD_BUTTONS currently down, as an RFB mask
        self._pos: tuple[int, int] | None = None
        self._keymap_stale = False
        self._closed = False
        self._lock = threading.RLock()
        self.x_errors = 0  # asynchronous X errors seen (never logged with their values)

    # --- InputBackend ---------------------------------------------------------
    def key(self, keysym: int, down: bool) -> None:
        self._guarded(lambda: self._key(int(keysym) & 0xFFFFFFFF, bool(down)))

    def pointer(self, x: int, y: int, button_mask: int) -> None:
        self._guarded(lambda: self._pointer(int(x), int(y), int(button_mask) & 0xFF))

    def release_all(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                for code in reversed(list(dict.fromkeys(self._pressed.values()))):
                    self._fake(X.KeyRelease, code)
                for button in HOLD_BUTTONS:
                    if self._buttons & (1 << (button - 1)):
                        self._fake(X.ButtonRelease, button)
                self._d.sync()
            except _X_ERRORS as exc:  # display gone: nothing is held any more either
                log.debug("release_all on a lost display: %s", type(exc).__name__)
            finally:
                self._pressed.clear()
                self._buttons = 0

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.release_all()
            self._closed = True
            try:
                self._drain()
                for keysym, code in self._bound.items():
                    if self._keymap.keysyms(code)[:2] == (keysym, keysym):
                        self._d.change_keyboard_mapping(code, [(X.NoSymbol, X.NoSymbol)])
                self._bound.clear()
                self._d.sync()
            except _X_ERRORS as exc:
                log.debug("could not restore spare keycodes: %s", type(exc).__name__)
            finally:
                try:
                    self._d.close()
                except _X_ERRORS:
                    pass

    # --- extras -------------------------------------------------------------
    def sync(self) -> None:
        """Wait until the X server has processed everything we sent (tests; before a report)."""
        self._guarded(self._d.sync)

    @property
    def screen_size(self) -> tuple[int, int]:
        return self._width, self._height

    def __enter__(self) -> "XTestInput":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"XTestInput({self.display_name!r}, closed={self._closed})"

    # --- keys -----------------------------------------------------------------
    def _key(self, keysym: int, down: bool) -> None:
        if keysym == NO_SYMBOL:
            return  # NoSymbol names no key (and matches every empty keymap slot)
        self._drain()
        if not down:
            code = self._pressed.pop(keysym, None)
            if code is not None and code not in self._pressed.values():
                self._fake(X.KeyRelease, code)
                self._d.flush()
            return  # a release we never pressed (or already released by release_all) is dropped
        held = self._pressed.pop(keysym, None)
        if held is not None and held not in self._pressed.values():
            # Client autorepeat sends downs without ups; X drops a press of a key that is already
            # down, so a repeat is an up and a new down (which also restarts the server's own
            # autorepeat delay, so the two do not add up).
            self._fake(X.KeyRelease, held)
        state = self._root.query_pointer().mask
        choice = self._keymap.choose(keysym, state)
        if choice is None:
            spare = self._spare_for(keysym)
            if spare is None:
                log.warning("key dropped: all %d spare keycodes are held down", len(self._spares))
                return
            code, shift = spare, None
        else:
            code, shift = choice.keycode, choice.shift
        self._press(code, shift, bool(state & SHIFT_MASK))
        self._pressed[keysym] = code
        self._d.flush()

    def _press(self, code: int, shift: bool | None, shift_on: bool) -> None:
        if shift is None or shift == shift_on:
            self._fake(X.KeyPress, code)
        elif shift:
            fake_shift = self._keymap.shift_keycodes()[0]
            self._fake(X.KeyPress, fake_shift)
            self._fake(X.KeyPress, code)
            self._fake(X.KeyRelease, fake_shift)
        else:
            keys = self._d.query_keymap()
            held = [c for c in self._keymap.shift_keycodes() if keys[c // 8] & (1 << (c % 8))]
            for c in held:
                self._fake(X.KeyRelease, c)
            self._fake(X.KeyPress, code)
            for c in held:
                self._fake(X.KeyPress, c)

    def _spare_for(self, keysym: int) -> int | None:
        if keysym in self._bound:
            self._bound.move_to_end(keysym)
            return self._bound[keysym]
        taken = set(self._bound.values())
        free = [c for c in self._spares if c not in taken]
        if free:
            code = free[0]
        else:
            held = set(self._pressed.values())
            victim = next((ks for ks, c in self._bound.items() if c not in held), None)
            if victim is None:
                return None
            code = self._bound.pop(victim)
        self._d.change_keyboard_mapping(code, [(keysym, keysym)])
        self._keymap.set_keysyms(code, (keysym, keysym))
        self._bound[keysym] = code
        return code

    # --- pointer ----------------------------------------------------------------
    def _pointer(self, x: int, y: int, mask: int) -> None:
        self._drain()
        pos = (min(max(x, 0), self._width - 1), min(max(y, 0), self._height - 1))
        if pos != self._pos:
            self._d.xtest_fake_input(X.MotionNotify, 0, root=self._root.id, x=pos[0], y=pos[1])
            self._pos = pos
        for button in HOLD_BUTTONS:
            bit = 1 << (button - 1)
            if (mask ^ self._buttons) & bit:
                self._fake(X.ButtonPress if mask & bit else X.ButtonRelease, button)
        self._buttons = mask & _HOLD_MASK
        for button in WHEEL_BUTTONS:
            if mask & (1 << (button - 1)):
                self._fake(X.ButtonPress, button)
                self._fake(X.ButtonRelease, button)
        self._d.flush()

    # --- X plumbing ---------------------------------------------------------------
    def _guarded(self, call: Callable[[], T]) -> T:
        with self._lock:
            if self._closed:
                raise InputError(f"the input backend for {self.display_name} is closed")
            try:
                return call()
            except _X_ERRORS as exc:
                raise InputError(f"X display {self.display_name} is gone: {type(exc).__name__}") from exc

    def _fake(self, event_type: int, detail: int) -> None:
        self._d.xtest_fake_input(event_type, detail)

    def _on_x_error(self, err: Any, request: Any) -> None:
        self.x_errors += 1
        log.debug("X error %s", type(err).__name__)

    def _drain(self) -> None:
        """Read queued events: keymap changes (ours and others') and screen size changes."""
        while self._d.pending_events():
            event = self._d.next_event()
            if event.type == X.MappingNotify:
                self._keymap_stale = True
            elif event.type == X.ConfigureNotify and event.window.id == self._root.id:
                self._width, self._height = event.width, event.height
        if self._keymap_stale:
            self._keymap_stale = False
            self._keymap = self._load_keymap()
            # Another client (a layout switch, xdotool) may have taken a spare keycode.
            for keysym, code in list(self._bound.items()):
                if self._keymap.keysyms(code)[:2] != (keysym, keysym):
                    del self._bound[keysym]
                    self._spares.remove(code)
            taken = set(self._bound.values())
            self._spares = [c for c in self._spares if c in taken or not any(self._keymap.keysyms(c))]

    def _load_keymap(self) -> Keymap:
        first = self._d.display.info.min_keycode
        count = self._d.display.info.max_keycode - first + 1
        rows = [tuple(row) for row in self._d.get_keyboard_mapping(first, count)]
        modifiers = [list(codes) for codes in self._d.get_modifier_mapping()]
        return Keymap(first, rows, modifiers)
