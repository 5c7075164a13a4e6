"""XTest backend on a real Xvfb: what arrives in real X clients (a python-xlib window, xterm)."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from Xlib import X
from Xlib.display import Display

from agent.inputs import InputError, open_input_backend
from agent.inputs.keysyms import (
    LOCK_MASK,
    SHIFT_MASK,
    UNICODE_OFFSET,
    XK_SHIFT_L,
    Keymap,
    convert_case,
    core_keysym,
    equivalents,
    from_char,
    is_character,
)
from agent.inputs.xtest import SPARE_POOL_SIZE, XTestInput
from agent.workloads.xvfb import start_xvfb, stop_process
from tests.support.tools import need

XK_CONTROL_L = 0xFFE3
XK_TAB = 0xFF09
XK_ISO_LEFT_TAB = 0xFE20


class Probe:
    """A real X client: a full-screen window holding the keyboard focus that records what reaches it."""

    def __init__(self, display: str) -> None:
        self.d = Display(display)
        screen = self.d.screen()
        self.window = screen.root.create_window(
            0, 0, screen.width_in_pixels, screen.height_in_pixels, 0, screen.root_depth,
            event_mask=X.KeyPressMask | X.KeyReleaseMask | X.ButtonPressMask | X.ButtonReleaseMask)
        self.window.map()
        self.d.sync()
        self.window.set_input_focus(X.RevertToPointerRoot, X.CurrentTime)
        self.d.sync()
        self.keycodes: list[int] = []  # keycode of every KeyPress, in order

    def drain(self, backend: XTestInput) -> list[tuple[int, int, int]]:
        """(event type, detail, state) of every event the backend caused so far; keysym for key presses."""
        backend.sync()  # the server has handled our fake input...
        self.d.sync()  # ...and every event it generated for us precedes this reply
        out = []
        while self.d.pending_events():
            ev = self.d.next_event()
            if ev.type == X.MappingNotify:
                continue  # we read the live map below, one character at a time
            if ev.type == X.KeyPress:
                syms = self.d.get_keyboard_mapping(ev.detail, 1)[0]
                index = 1 if ev.state & X.ShiftMask else 0
                self.keycodes.append(ev.detail)
                out.append((ev.type, syms[index] or syms[0], ev.state))
            elif ev.type != X.KeyRelease:
                out.append((ev.type, ev.detail, ev.state))
        return out

    def type(self, backend: XTestInput, text: str) -> tuple[str, list[int]]:
        """Type ``text`` as an RFB client would; returns what the window received, as text, and the keycodes."""
        received, codes = [], []
        for ch in text:
            keysym = from_char(ch)
            backend.key(keysym, True)
            backend.key(keysym, False)
            presses = [sym for kind, sym, _ in self.drain(backend) if kind == X.KeyPress]
            for sym, code in zip(presses, self.keycodes[len(self.keycodes) - len(presses):]):
                if sym != XK_SHIFT_L:
                    received.append(chr(sym - UNICODE_OFFSET) if sym >= UNICODE_OFFSET else chr(sym))
                    codes.append(code)
        return "".join(received), codes

    def close(self) -> None:
        self.window.destroy()
        self.d.close()


@pytest.fixture
def backend(xvfb: str) -> Iterator[XTestInput]:
    b = XTestInput(xvfb)
    yield b
    b.close()


@pytest.fixture
def probe(xvfb: str) -> Iterator[Probe]:
    p = Probe(xvfb)
    yield p
    p.close()


def _keys_down(display: str) -> set[int]:
    d = Display(display)
    try:
        keys = d.query_keymap()
    finally:
        d.close()
    return {code for code in range(8, 256) if keys[code // 8] & (1 << (code % 8))}


def _start_xvfb(*extensions: str) -> tuple[subprocess.Popen, str]:
    """A private Xvfb with our own extension flags (the shared fixture always enables XTEST)."""
    return start_xvfb(320, 200, first=700 + os.getpid() % 200, last=999, extensions=extensions)


# --- opening ---------------------------------------------------------------

@pytest.mark.xvfb
def test_no_display_is_a_clear_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(InputError, match="set DISPLAY or pass --display"):
        open_input_backend(None)


@pytest.mark.xvfb
def test_unreachable_display_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot open X display :987"):
        XTestInput(":987")


@pytest.mark.xvfb
def test_missing_xtest_extension_is_named() -> None:
    proc, display = _start_xvfb("-extension", "XTEST")
    try:
        with pytest.raises(InputError, match="no XTEST extension"):
            open_input_backend(display)
    finally:
        stop_process(proc)


@pytest.mark.xvfb
def test_lost_display_raises_input_error_but_release_and_close_do_not() -> None:
    proc, display = _start_xvfb()
    backend = XTestInput(display)
    try:
        backend.key(from_char("a"), True)
        backend.sync()
        stop_process(proc)
        with pytest.raises(InputError, match="is gone"):
            for _ in range(3):  # the first write may still land in the socket buffer
                backend.key(from_char("b"), True)
                backend.sync()
        backend.release_all()
    finally:
        backend.close()
        backend.close()
    with pytest.raises(InputError, match="closed"):
        backend.pointer(1, 1, 0)


# --- pointer -----------------------------------------------------------------

def _mouse_location(display: str) -> tuple[int, int]:
    need("xdotool")
    out = subprocess.run(["xdotool", "getmouselocation", "--shell"], env={**os.environ, "DISPLAY": display},
                         capture_output=True, text=True, timeout=10, check=True).stdout
    fields = dict(line.split("=", 1) for line in out.split())
    return int(fields["X"]), int(fields["Y"])


@pytest.mark.xvfb
def test_pointer_moves_and_is_clamped_to_the_screen(xvfb: str, backend: XTestInput) -> None:
    backend.pointer(100, 200, 0)
    backend.sync()
    assert _mouse_location(xvfb) == (100, 200)
    backend.pointer(5000, -30, 0)
    backend.sync()
    assert _mouse_location(xvfb) == (1023, 0)
    backend.pointer(-1, 9999, 0)
    backend.sync()
    assert _mouse_location(xvfb) == (0, 767)


@pytest.mark.xvfb
def test_buttons_hold_and_wheel_clicks_once_per_event(backend: XTestInput, probe: Probe) -> None:
    backend.pointer(50, 60, 0b001)  # button 1 down
    backend.pointer(55, 60, 0b001)  # drag
    backend.pointer(55, 60, 0b000)  # button 1 up
    backend.pointer(55, 60, 0b100)  # button 3 down
    backend.pointer(55, 60, 0b000)
    assert probe.drain(backend) == [(X.ButtonPress, 1, 0), (X.ButtonRelease, 1, X.Button1Mask),
                                    (X.ButtonPress, 3, 0), (X.ButtonRelease, 3, X.Button3Mask)]
    for bit, button in ((8, 4), (16, 5), (32, 6), (64, 7)):
        backend.pointer(55, 60, bit)
        backend.pointer(55, 60, bit)  # another wheel step, as clients send them
        backend.pointer(55, 60, 0)
        got = [(kind, detail) for kind, detail, _ in probe.drain(backend)]
        assert got == [(X.ButtonPress, button), (X.ButtonRelease, button)] * 2


@pytest.mark.xvfb
def test_release_all_lets_go_of_every_key_and_button(xvfb: str, backend: XTestInput, probe: Probe) -> None:
    before = _keys_down(xvfb)
    for keysym in (XK_SHIFT_L, XK_CONTROL_L, from_char("a"), from_char("ż")):
        backend.key(keysym, True)
    backend.pointer(10, 10, 0b1 | 0b10000000)  # button 1 and button 8 held
    backend.sync()
    assert len(_keys_down(xvfb) - before) == 4
    probe.drain(backend)
    backend.release_all()
    assert _keys_down(xvfb) == before == set()
    released = {detail for kind, detail, _ in probe.drain(backend) if kind == X.ButtonRelease}
    assert released == {1, 8}
    # A late release from the client for a key we already let go of changes nothing.
    backend.key(XK_SHIFT_L, False)
    assert _keys_down(xvfb) == set()


@pytest.mark.xvfb
def test_repeats_and_nosymbol_leave_nothing_down(xvfb: str, backend: XTestInput, probe: Probe) -> None:
    backend.key(0, True)  # NoSymbol names no key
    for _ in range(3):  # client-side autorepeat sends repeated downs
        backend.key(from_char("ż"), True)
        backend.key(from_char("x"), True)
    backend.sync()
    assert len(_keys_down(xvfb)) == 2
    backend.key(from_char("ż"), False)
    backend.key(from_char("x"), False)
    backend.sync()
    assert _keys_down(xvfb) == set()
    presses = [sym for kind, sym, _ in probe.drain(backend) if kind == X.KeyPress]
    assert presses == [UNICODE_OFFSET + 0x17C, 0x78] * 3


# --- keys ------------------------------------------------------------------------

@pytest.mark.xvfb
def test_text_with_shifted_symbols_arrives(backend: XTestInput, probe: Probe) -> None:
    text = "Hello, World! #$% ~{}|:\"<>?_+ 09 az AZ"
    received, _ = probe.type(backend, text)
    assert received == text


@pytest.mark.xvfb
def test_keysyms_missing_from_the_keymap_use_spare_keycodes(xvfb: str, probe: Probe) -> None:
    d = Display(xvfb)
    first = d.display.info.min_keycode
    original = [tuple(row) for row in d.get_keyboard_mapping(first, d.display.info.max_keycode - first + 1)]
    backend = XTestInput(xvfb)
    try:
        text = "żółć αβγδεζηθικλμ"  # more distinct missing letters than the pool holds
        received, codes = probe.type(backend, text)
        assert received == text
        spare = {c for ch, c in zip(text, codes) if ch not in " "}
        assert len(spare) <= SPARE_POOL_SIZE
        assert all(not any(original[c - first]) for c in spare)  # only keycodes that had no keysym
        # A Unicode keysym for a character the map has under its Latin-1 keysym uses that key.
        received, codes = probe.type(backend, "A")
        backend.key(UNICODE_OFFSET + ord("A"), True)
        backend.key(UNICODE_OFFSET + ord("A"), False)
        assert [sym for kind, sym, _ in probe.drain(backend) if kind == X.KeyPress and sym != XK_SHIFT_L] == [0x41]
        assert not backend._bound.get(UNICODE_OFFSET + ord("A"))
    finally:
        backend.close()
    restored = [tuple(row) for row in d.get_keyboard_mapping(first, len(original))]
    d.close()
    assert restored == original


@pytest.mark.xvfb
def test_level0_symbol_while_client_holds_shift(xvfb: str, backend: XTestInput, probe: Probe) -> None:
    backend.key(XK_SHIFT_L, True)
    for keysym in (from_char("1"), from_char("A"), from_char("!")):
        backend.key(keysym, True)
        backend.key(keysym, False)
    presses = [(sym, state & X.ShiftMask) for kind, sym, state in probe.drain(backend) if kind == X.KeyPress]
    # Shift is lifted around '1' and put back; 'A' and '!' use the client's Shift as is.
    assert presses == [(XK_SHIFT_L, 0), (0x31, 0), (XK_SHIFT_L, 0), (0x41, X.ShiftMask), (0x21, X.ShiftMask)]
    assert len(_keys_down(xvfb)) == 1  # the client's Shift is still down
    backend.key(XK_SHIFT_L, False)
    backend.sync()
    assert _keys_down(xvfb) == set()


@pytest.mark.xvfb
def test_function_keys_keep_the_clients_shift(backend: XTestInput, probe: Probe) -> None:
    backend.key(XK_SHIFT_L, True)
    backend.key(XK_TAB, True)
    backend.key(XK_TAB, False)
    backend.key(XK_SHIFT_L, False)
    presses = [sym for kind, sym, _ in probe.drain(backend) if kind == X.KeyPress]
    assert presses == [XK_SHIFT_L, XK_ISO_LEFT_TAB]  # Shift+Tab reached the app as back-tab


@pytest.mark.xvfb
def test_text_reaches_xterm(xvfb: str, backend: XTestInput, tmp_path: Path) -> None:
    need("xterm")
    id_file, out_file = tmp_path / "windowid", tmp_path / "typed"
    env = {**os.environ, "DISPLAY": xvfb, "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen(["xterm", "-u8", "-geometry", "60x5+0+0", "-e", "sh", "-c",
                             f"echo $WINDOWID > {id_file}; exec cat > {out_file}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not (id_file.exists() and id_file.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, "xterm did not start"
            time.sleep(0.05)
        d = Display(xvfb)
        d.create_resource_object("window", int(id_file.read_text())).set_input_focus(X.RevertToPointerRoot,
                                                                                      X.CurrentTime)
        d.sync()
        d.close()
        for ch in "Hello, World! #$% żλ\n":
            backend.key(from_char(ch), True)
            backend.key(from_char(ch), False)
        backend.key(XK_CONTROL_L, True)  # Ctrl+D: end of file for cat
        backend.key(from_char("d"), True)
        backend.key(from_char("d"), False)
        backend.key(XK_CONTROL_L, False)
        backend.sync()
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out_file.read_text(encoding="utf-8") == "Hello, World! #$% żλ\n"


# --- the keymap model, without X ---------------------------------------------------

_SYMS = st.sampled_from([0, 0x31, 0x21, 0x61, 0x41, 0x62, 0x42, 0xE9, 0xC9, 0x20, 0xFF09, 0xFE20, 0xFFB1, 0xFF9C,
                         UNICODE_OFFSET + 0x17C, UNICODE_OFFSET + 0x17B, 0xFF7F])


@st.composite
def _keymaps(draw: st.DrawFn) -> Keymap:
    rows = draw(st.lists(st.tuples(_SYMS, _SYMS), min_size=1, max_size=12))
    shift = draw(st.lists(st.integers(8, 8 + len(rows) - 1), max_size=2))
    num = draw(st.lists(st.integers(8, 8 + len(rows) - 1), max_size=1))
    return Keymap(8, [tuple(r) for r in rows], [shift, [], [], [], num, [], [], []])


@settings(max_examples=200, deadline=None)
@given(_keymaps(), _SYMS.filter(bool), st.integers(0, 0xFF))
def test_choice_produces_the_keysym_under_the_planned_shift(keymap: Keymap, keysym: int, state: int) -> None:
    # NumLock is Mod2 below, as on every real keyboard; a Shift key carrying NumLock would make Shift the NumLock
    # modifier (Xlib looks NumLock up in the modifier map), a keymap no X server ships.
    assume(not any(0xFF7F in keymap.keysyms(code) for code in keymap.modifiers[0]))
    choice = keymap.choose(keysym, state)
    if choice is None:
        return  # the backend binds a spare keycode
    shift = bool(state & SHIFT_MASK) if choice.shift is None else choice.shift
    numlock = bool(state & 0x10) and any(0xFF7F in keymap.keysyms(code) for code in keymap.modifiers[4])
    if is_character(keysym):
        seen = core_keysym(keymap.keysyms(choice.keycode), shift, bool(state & LOCK_MASK), numlock)
        assert seen in equivalents(keysym)
        if choice.shift and not state & SHIFT_MASK:
            assert keymap.shift_keycodes()  # a fake Shift needs a Shift key
    else:
        assert keysym in keymap.keysyms(choice.keycode)[:2]


def test_choice_prefers_no_shift_change_and_falls_back_to_none() -> None:
    keymap = Keymap(8, [(0x31, 0x21), (0x61, 0x41), (0xFFE1, 0), (0, 0)], [[10], [], [], [], [], [], [], []])
    assert keymap.choose(0x21, 0).shift is True  # '!' needs a fake Shift
    assert keymap.choose(0x21, SHIFT_MASK).shift is True  # ...which the client already holds
    assert keymap.choose(0x31, SHIFT_MASK).shift is False  # '1' needs Shift lifted
    assert keymap.choose(0x41, LOCK_MASK).shift is False  # Caps Lock already gives 'A'
    assert keymap.choose(UNICODE_OFFSET + 0x17C, 0) is None  # not on this map: spare keycode
    assert keymap.choose(UNICODE_OFFSET + 0x61, 0).keycode == 9  # Unicode spelling of a Latin-1 key
    assert keymap.spare_keycodes() == [11]


def test_core_rules_and_case() -> None:
    assert core_keysym((0x61, 0), False, False, False) == 0x61
    assert core_keysym((0x61, 0), True, False, False) == 0x41  # lone lowercase letter pairs with its capital
    assert core_keysym((0x31, 0x21), False, True, False) == 0x31  # Caps Lock does not shift digits
    assert core_keysym((0xFF9C, 0xFFB1), False, False, True) == 0xFFB1  # Num Lock picks KP_1
    assert core_keysym((0xFF9C, 0xFFB1), True, False, True) == 0xFF9C
    assert convert_case(UNICODE_OFFSET + 0x17C) == (UNICODE_OFFSET + 0x17C, UNICODE_OFFSET + 0x17B)
    assert convert_case(0xDF) == (0xDF, 0xDF) and convert_case(0xFF) == (0xFF, 0xFF)


@settings(max_examples=100, deadline=None)
@given(_keymaps(), _SYMS, st.integers(0, 11), st.tuples(_SYMS, _SYMS))
def test_codes_for_follows_the_map_and_its_changes(keymap: Keymap, keysym: int, row: int,
                                                   new: tuple[int, int]) -> None:
    def scan() -> list[tuple[int, int]]:
        found = sorted((index, keymap.min_keycode + i) for i, syms in enumerate(keymap.syms)
                       for index in (0, 1) if index < len(syms) and syms[index] == keysym)
        return [(code, index) for index, code in found]

    assert keymap.codes_for(keysym) == scan()
    keymap.set_keysyms(keymap.min_keycode + row % len(keymap.syms), new)  # the backend binding a spare keycode
    assert keymap.codes_for(keysym) == scan()
