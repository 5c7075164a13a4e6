"""Keysym rules and the keyboard-map model the XTest backend plans key presses with.

No I/O here: ``Keymap`` is a snapshot of the X server's core keyboard map and
modifier map, and ``Keymap.choose()`` answers "which keycode, and with Shift
on, off or left alone, produces this keysym?" following the core protocol's
keysym selection rules (X11 protocol, §5 "Keyboards"). A keysym no keycode
produces at levels 1-2 gets None: the backend then binds a spare keycode, as
x11vnc does. Only group 1 and the Shift level are planned for; AltGr levels go
through the spare-keycode path, which works on any layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

NO_SYMBOL = 0
UNICODE_OFFSET = 0x01000000
UNICODE_MAX = 0x0010FFFF

XK_BACKSPACE = 0xFF08
XK_TAB = 0xFF09
XK_RETURN = 0xFF0D
XK_ESCAPE = 0xFF1B
XK_SHIFT_L = 0xFFE1
XK_SHIFT_R = 0xFFE2
XK_CAPS_LOCK = 0xFFE5
XK_SHIFT_LOCK = 0xFFE6
XK_NUM_LOCK = 0xFF7F
XK_MODE_SWITCH = 0xFF7E

SHIFT_MAP_INDEX = 0
LOCK_MAP_INDEX = 1
SHIFT_MASK = 1 << SHIFT_MAP_INDEX
LOCK_MASK = 1 << LOCK_MAP_INDEX

_CONTROL_CHARS = {"\n": XK_RETURN, "\r": XK_RETURN, "\t": XK_TAB, "\b": XK_BACKSPACE, "\x1b": XK_ESCAPE}


def is_modifier(keysym: int) -> bool:
    """Shift, Control, Alt, Meta, Super, Hyper, the locks, Mode_switch and ISO level shifts."""
    return 0xFFE1 <= keysym <= 0xFFEE or keysym in (XK_MODE_SWITCH, XK_NUM_LOCK) or 0xFE01 <= keysym <= 0xFE13


def is_keypad(keysym: int) -> bool:
    """X11's IsKeypadKey and IsPrivateKeypadKey."""
    return 0xFF80 <= keysym <= 0xFFBD or 0x11000000 <= keysym <= 0x1100FFFF


def is_character(keysym: int) -> bool:
    """A keysym that stands for a printable character (its Shift level matters).

    Function keys, cursor keys, the keypad, dead keys and vendor keysyms are
    not: for those the client's own Shift state must reach the application
    unchanged (Shift+Tab, Shift+Right selects text).
    """
    if UNICODE_OFFSET + 0x20 <= keysym <= UNICODE_OFFSET + UNICODE_MAX:
        return not 0x7F <= keysym - UNICODE_OFFSET <= 0x9F
    return 0x20 <= keysym <= 0x7E or 0xA0 <= keysym < 0xFD00


def to_char(keysym: int) -> Optional[str]:
    """The character a Latin-1 or Unicode keysym stands for, else None."""
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        return chr(keysym)
    if UNICODE_OFFSET + 0x20 <= keysym <= UNICODE_OFFSET + UNICODE_MAX:
        return chr(keysym - UNICODE_OFFSET)
    return None


def from_char(ch: str) -> int:
    """The keysym an RFB client sends for a character: Latin-1 as is, the rest as Unicode keysyms."""
    if ch in _CONTROL_CHARS:
        return _CONTROL_CHARS[ch]
    code = ord(ch)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return UNICODE_OFFSET + code


def equivalents(keysym: int) -> tuple[int, ...]:
    """``keysym`` and the other spellings of the same character (Latin-1 legacy vs Unicode)."""
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        return keysym, UNICODE_OFFSET + keysym
    code = keysym - UNICODE_OFFSET
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return keysym, code
    return (keysym,)


def convert_case(keysym: int) -> tuple[int, int]:
    """(lower, upper) forms, like XConvertCase, for Latin-1 and Unicode keysyms; others map to themselves."""
    ch = to_char(keysym)
    if ch is None:
        return keysym, keysym
    lower, upper = ch.lower(), ch.upper()
    if len(lower) != 1 or len(upper) != 1:
        return keysym, keysym  # e.g. sharp s: no single-character partner
    if keysym >= UNICODE_OFFSET:
        return UNICODE_OFFSET + ord(lower), UNICODE_OFFSET + ord(upper)
    if ord(lower) > 0xFF or ord(upper) > 0xFF:
        return keysym, keysym  # partner outside Latin-1 (y diaeresis, micro sign)
    return ord(lower), ord(upper)


def core_keysym(syms: Sequence[int], shift: bool, lock: bool, numlock: bool) -> int:
    """The keysym a client sees for a key with these group-1 keysyms, per the core protocol rules.

    Lock is taken as CapsLock (the usual meaning of the Lock modifier).
    """
    k1 = syms[0] if len(syms) > 0 else NO_SYMBOL
    k2 = syms[1] if len(syms) > 1 else NO_SYMBOL
    if k2 == NO_SYMBOL:
        lower, upper = convert_case(k1)
        k1, k2 = (lower, upper) if lower != upper else (k1, k1)
    if numlock and is_keypad(k2):
        return k1 if shift else k2
    if not shift and not lock:
        return k1
    if not shift:
        return convert_case(k1)[1]
    return convert_case(k2)[1] if lock else k2


@dataclass(frozen=True)
class Choice:
    """Press ``keycode``; ``shift`` says which Shift state the press needs (None: leave it as it is)."""

    keycode: int
    shift: Optional[bool]


@dataclass
class Keymap:
    """A snapshot of the core keyboard map (``syms[keycode]``) and modifier map."""

    min_keycode: int
    syms: list[tuple[int, ...]]  # syms[i] belongs to keycode min_keycode + i
    modifiers: list[list[int]]  # 8 lists of keycodes: Shift, Lock, Control, Mod1..Mod5
    # keysym -> codes_for's answer, built on first use: a scan of the whole map was ~0.3 ms a typed key
    _codes: Optional[dict[int, list[tuple[int, int]]]] = field(default=None, init=False, repr=False, compare=False)

    @property
    def max_keycode(self) -> int:
        return self.min_keycode + len(self.syms) - 1

    def keysyms(self, keycode: int) -> tuple[int, ...]:
        i = keycode - self.min_keycode
        return self.syms[i] if 0 <= i < len(self.syms) else ()

    def set_keysyms(self, keycode: int, syms: Sequence[int]) -> None:
        self.syms[keycode - self.min_keycode] = tuple(syms)
        self._codes = None

    def codes_for(self, keysym: int) -> list[tuple[int, int]]:
        """(keycode, index) pairs holding ``keysym`` in group 1 (indexes 0 and 1), lowest index first."""
        if self._codes is None:
            found: dict[int, list[tuple[int, int]]] = {}
            for i, syms in enumerate(self.syms):
                for index, sym in enumerate(syms[:2]):
                    found.setdefault(sym, []).append((index, self.min_keycode + i))
            self._codes = {sym: [(code, index) for index, code in sorted(pairs)] for sym, pairs in found.items()}
        return list(self._codes.get(keysym, ()))

    def spare_keycodes(self) -> list[int]:
        """Keycodes with no keysym at all, highest first (the low ones are often special to toolkits)."""
        return [self.min_keycode + i for i in range(len(self.syms) - 1, -1, -1)
                if self.min_keycode + i > 8 and not any(self.syms[i])]

    def modifier_mask(self, keysym: int) -> int:
        """The modifier bit of the modifier whose keycodes carry ``keysym`` (0 if none)."""
        for bit, codes in enumerate(self.modifiers):
            for code in codes:
                if code and keysym in self.keysyms(code):
                    return 1 << bit
        return 0

    def shift_keycodes(self) -> list[int]:
        return [code for code in self.modifiers[SHIFT_MAP_INDEX] if code]

    def choose(self, keysym: int, state: int) -> Optional[Choice]:
        """Plan the press that makes a client see ``keysym``, given the server's modifier ``state`` mask."""
        if keysym == NO_SYMBOL:
            return None
        shift_on = bool(state & SHIFT_MASK)
        lock_on = bool(state & LOCK_MASK)
        numlock_mask = self.modifier_mask(XK_NUM_LOCK)
        numlock_on = bool(numlock_mask and state & numlock_mask)
        for candidate in equivalents(keysym):
            codes = self.codes_for(candidate)
            if not codes:
                continue
            if is_modifier(keysym):
                return Choice(codes[0][0], None)
            if not is_character(keysym):
                # Function keys keep the client's Shift (Shift+Tab), unless only the shifted level has them.
                for code, index in codes:
                    if index == 0:
                        return Choice(code, None)
            options = [(code, shift) for code, _ in codes for shift in (shift_on, not shift_on)
                       if core_keysym(self.keysyms(code), shift, lock_on, numlock_on) == candidate]
            options.sort(key=lambda option: option[1] != shift_on)  # prefer no Shift change
            if not options:
                continue
            code, shift = options[0]
            if shift and not shift_on and not self.shift_keycodes():
                continue
            return Choice(code, shift)
        return None
