"""Viewer-to-agent input as fixed-size records on a fixed tick (DESIGN §4.2 point 3; issue #11 C).

The relay, or anyone on the path, sees each record's length and time. Unpaced,
a KeyEvent (8 bytes of RFB) and a PointerEvent (6) make records of different
sizes, one per event, at the moment of the key press: the kind of event and
the rhythm of typing leak. As OpenSSH's ObscureKeystrokeTiming does for a
terminal, the viewer instead

* queues what it sends (mux frames) and sends it only on ticks of a fixed
  grid (``INPUT_TICK``, aligned to the loop's clock, not to the first key), so
  per-key timing is known to the tick and no finer;
* pads what a tick carries with a PAD mux frame (agent.secure.mux, ignored by
  the receiver) to a whole number of ``INPUT_FRAMES_SIZE`` bytes and sends
  each as its own DATA record of ``INPUT_RECORD_SIZE`` plaintext bytes, so a
  key, a click, a pointer move and an update request all look alike. Each
  carries the viewer's acknowledgement at its full width in the rest
  (``Channel.send_paced``), whether or not there is anything new to
  acknowledge: one type and one size always, and the ACK an update earned
  rides the next tick instead of a record of its own;
* while typing (``TYPING_WINDOW`` after the last real input) sends a chaff
  record on every tick that has nothing, so a silent tick looks like a key;
  outside it nothing is sent (an idle session costs nothing).

Real input is what a person does: keys, the pointer, the clipboard. What a
viewer sends by itself (an update request after each update, its encodings)
goes on the tick, padded, but starts no chaff: its timing follows the agent's
updates, which the relay sees anyway. So a technician who only watches a
changing screen costs the customer no chaff (it was 50 records a second
while anything changed), and typing is hidden as before.

Cost (measured by tests/security/test_input_padding.py): each record is
INPUT_RECORD_SIZE + 18 bytes on the wire (2-byte header, 16-byte tag) = 82 bytes, 50 a
second while typing: 4.1 KB/s (33 kbit/s) on the customer's downlink for at
most TYPING_WINDOW after the last input, and up to one tick (20 ms, 10 ms on
average) of added input latency; but no ACK records from the viewer while it
sends input (each a record of 18 bytes more for the agent to open). Bulk input
(clipboard) still shows its size rounded up to INPUT_FRAMES_SIZE; records
replayed after a resume are not re-padded (a resume is visible anyway).
"""
from __future__ import annotations

import asyncio
import math
from typing import Callable

from agent.secure.mux import MIN_HEADER
from agent.secure.record_events import MAX_ACK_PREFIX

INPUT_TICK = 0.020
"""Seconds between input sends: per-key timing is known to 20 ms (OpenSSH's default), at most 20 ms
of added latency, 10 ms on average, well under what a person notices on a remote desktop."""

INPUT_RECORD_SIZE = 64
"""Plaintext bytes of every input record: the acknowledgement (MAX_ACK_PREFIX) and INPUT_FRAMES_SIZE of mux
frames."""

INPUT_FRAMES_SIZE = INPUT_RECORD_SIZE - MAX_ACK_PREFIX
"""Mux bytes of every input record: a tick's usual load (a KeyEvent frame is 10 bytes, a PointerEvent 8,
a FramebufferUpdateRequest 12, the PAD frame's header 2; a key's press and release and a request: 34) fits."""

TYPING_WINDOW = 1.0
"""Seconds of chaff after the last real input: longer than the gaps within typing, so pauses between
keys do not show; after it the viewer falls silent (idle costs nothing)."""

_MAX_PENDING = 4 * 1024 * 1024  # queued bytes before a tick sends them anyway (bounds memory; bulk input)


class InputPacer:
    """Queue frames; on each tick emit them padded to whole records (``emit(data)``), or chaff."""

    def __init__(self, emit: Callable[[bytes], None], pad: Callable[[int], bytes], *,
                 tick: float = INPUT_TICK, record_size: int = INPUT_FRAMES_SIZE,
                 typing_window: float = TYPING_WINDOW) -> None:
        if record_size < MIN_HEADER:
            raise ValueError("an input record must hold at least a PAD frame")
        self._emit = emit
        self._pad = pad
        self.tick = tick
        self.record_size = record_size
        self._window = typing_window
        self._pending = bytearray()
        self._input_pending = False  # what is queued carries a person's input
        self._last_input = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._armed = 0  # the grid point (a multiple of ``tick``) the timer is set for
        self._served = 0  # the last grid point a tick ran on (0: none yet; the loop's clock is far past it)
        self._loop = asyncio.get_running_loop()
        self.records = 0  # records sent (real and chaff), for the cost figures
        self.chaff = 0

    def submit(self, frames: bytes, *, user_input: bool = True) -> None:
        """Queue ``frames`` for the next tick. ``user_input``: they carry a person's input, which starts or
        extends the typing window (False for what a viewer sends by itself: see the module docstring)."""
        self._pending += frames
        self._input_pending = self._input_pending or user_input
        if len(self._pending) >= _MAX_PENDING:
            self.flush()
        self._arm()

    def _arm(self) -> None:
        if self._timer is None:
            now = self._loop.time()
            # The grid, not the key's own time; never the point just served. A loop whose clock moves in
            # whole milliseconds (uvloop) wakes on a grid point, or a fraction of a millisecond before it,
            # where ``now / tick`` falls just below it: that point again would be a tick of its own, at once.
            self._armed = max(math.floor(now / self.tick + 1e-6) + 1, self._served + 1)
            self._timer = self._loop.call_at(self._armed * self.tick, self._on_tick)

    def _on_tick(self) -> None:
        self._timer = None
        self._served = self._armed
        now = self._loop.time()
        if self._pending:
            self.flush()  # a person's input in it moves _last_input to now
        elif now - self._last_input < self._window:
            self._emit(self._pad(self.record_size))
            self.records += 1
            self.chaff += 1
        if now - self._last_input < self._window:
            self._arm()  # else idle, or only a viewer's own traffic: nothing until the next submit

    def flush(self) -> None:
        """Send what is queued now, padded to whole records (before the channel's CLOSE, or when large)."""
        if not self._pending:
            return
        if self._input_pending:
            self._input_pending = False
            self._last_input = self._loop.time()
        data = bytes(self._pending)
        self._pending.clear()
        count = -(-(len(data) + MIN_HEADER) // self.record_size)
        self._emit(data + self._pad(count * self.record_size - len(data)))
        self.records += count

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
        self._input_pending = False
