"""A palette whose indices stay put from one rectangle to the next.

Below the channel's long-window zstd, Tight's palette filter turns 4-byte
pixels into 1-byte indices: a quarter of the bytes to compress, and a glyph
drawn in the same colours repeats byte for byte only if its colours keep
their indices. Tight's own palette (most frequent colour first) renumbers
them in every rectangle, which hid the repetition: 610 kB where Raw cost 374
on 22 pages of antialiased xterm text in less, captured from the link
benchmark's Xvfb and replayed through the detector, the encoder and zstd.
One palette of up to 256 slots that keeps its order instead costs 293 kB,
0.78x Raw (``python benchmarks/bench_encode.py --text``, on synthetic pages:
0.72x). A palette may name colours a rectangle does not use (rfbproto,
Tight), so any Tight client decodes it; the repeated palette itself costs
zstd a single match.
"""
from __future__ import annotations

import numpy as np

SLOTS = 256  # Tight's largest palette
# Churn: the share of a rectangle's colours that had to evict another, averaged over the last rectangles
# with this weight. On a screen of more colours than slots (a colourful IDE, a web page) slots change
# hands all the time, an old glyph's indices no longer match its next appearance, and Raw (whose
# pixels always match) costs less: bench_encode's synthetic typing, 8.2 kB against Raw's 3.3, evicts
# for 52% of colours; 22 pages of real xterm text evict for none.
CHURN_WEIGHT = 1 / 16
CHURN_LIMIT = 0.25


class StablePalette:
    """Up to SLOTS colours in fixed slots; a colour keeps its slot until it is evicted.

    A new colour takes a free slot, or else the slot of the colour least recently used by a
    rectangle (never one the current rectangle uses). Evicting the least recently used scatters
    the changed slots, but a clock hand that keeps them together measured no better.
    """

    def __init__(self, slots: int = SLOTS) -> None:
        self._colours = np.zeros(slots, np.uint32)
        # slot of each colour, and each slot's last use: plain Python, since a typed glyph's rectangle
        # brings a handful of colours, and a dozen numpy calls on arrays that small cost more than a loop
        self._slot: dict[int, int] = {}
        self._last_used = [0] * slots
        self._tick = 0
        self._churn = 0.0

    def __len__(self) -> int:
        return len(self._slot)

    @property
    def churning(self) -> bool:
        """Whether colours have lately been evicting each other: then indices do not repeat, pixels would."""
        return self._churn > CHURN_LIMIT

    def cover(self, colours: np.ndarray) -> np.ndarray:
        """The slots' colours (1-D uint32, a view valid until the next call), including all of ``colours``.

        ``colours`` are distinct pixel values, at most SLOTS of them.
        """
        slots = len(self._colours)
        if len(colours) > slots:
            raise ValueError(f"{len(colours)} colours do not fit a palette of {slots}")
        self._tick = tick = self._tick + 1
        slot_of, last_used = self._slot, self._last_used
        new = []
        for colour in colours.tolist():
            slot = slot_of.get(colour)
            if slot is None:
                new.append(colour)
            else:
                last_used[slot] = tick
        n = len(slot_of)
        evicted = max(0, len(new) - (slots - n))
        self._churn += CHURN_WEIGHT * (evicted / max(len(colours), 1) - self._churn)
        if new:
            free = list(range(n, n + min(slots - n, len(new))))
            if evicted:  # full: evict the least recently used colours this rectangle does not use
                used = np.array(last_used)
                used[n:] = tick  # (the free slots just taken are not victims)
                older = np.flatnonzero(used != tick)
                free += older[np.argsort(used[older], kind="stable")[:evicted]].tolist()
            for slot, colour in zip(free, new):
                if slot < n:
                    del slot_of[int(self._colours[slot])]
                self._colours[slot] = colour
                slot_of[colour] = slot
                last_used[slot] = tick
        return self._colours[:len(slot_of)]

    def in_slot_order(self, colours: np.ndarray) -> np.ndarray:
        """``colours`` (all covered by the last ``cover``) ordered by their slots."""
        slot_of = self._slot
        return self._colours[sorted(slot_of[colour] for colour in colours.tolist())]
