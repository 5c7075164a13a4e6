"""Text for the synthetic workloads: a code listing, prose from a word list, syntax colours, word wrap.

Generated from the workload's own random stream, so documents are the same on
every run, and made of real words so text encoders see realistic glyph runs.
"""
from __future__ import annotations

import re

import numpy as np

from agent.workloads.paint import Font, rgb

TEXT_COLOUR = rgb(30, 32, 38)

# A word list for prose: enough variety that lines do not repeat visibly.
WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so no more what up out can about into them "
    "only some time could these two may then do first any my now such like our over man me even most made after "
    "also did many before must through back years where much your way well down should because each just those "
    "people how too little state good very make world still own see men work long get here between both life "
    "being under never day same another know while last might us great old year off come since against go came "
    "right used take three session screen remote support agent viewer frame region pixel update encoder channel "
    "customer technician consent password relay network latency bandwidth display window keyboard pointer tile "
    "change detector rectangle palette compression stream record protocol server client connection handshake"
).split()

HEADINGS = (
    "Introduction", "Getting started", "Installation", "Configuration", "Screen capture", "Change detection",
    "Encoding rectangles", "The secure channel", "Relays and sessions", "Consent and retention", "Troubleshooting",
    "Performance notes", "Keyboard and pointer", "Frequently asked questions", "Glossary", "Appendix",
)

CODE = '''\
"""Session bookkeeping for the support desk."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RETRY_DELAY = 2.5  # seconds between reconnect attempts
MAX_VIEWERS = 1


@dataclass
class Ticket:
    """One request for help, from the phone call to the end of the session."""

    number: int
    customer: str
    opened: float
    notes: list[str] = field(default_factory=list)

    def add_note(self, text: str) -> None:
        # keep notes short: they are read aloud on the phone
        self.notes.append(text.strip()[:200])


class Desk:
    def __init__(self, name: str, capacity: int = 8) -> None:
        self.name = name
        self.capacity = capacity
        self.queue: asyncio.Queue[Ticket] = asyncio.Queue()
        self.active: dict[int, Ticket] = {}

    async def serve(self) -> None:
        while True:
            ticket = await self.queue.get()
            if len(self.active) >= self.capacity:
                log.warning("desk %s is full, ticket %d waits", self.name, ticket.number)
                await asyncio.sleep(RETRY_DELAY)
                await self.queue.put(ticket)
                continue
            self.active[ticket.number] = ticket
            log.info("ticket %d opened for %s", ticket.number, ticket.customer)

    def close(self, number: int, reason: str = "done") -> Ticket | None:
        ticket = self.active.pop(number, None)
        if ticket is not None:
            ticket.add_note(f"closed: {reason}")
        return ticket


def summary(desk: Desk) -> str:
    busy = len(desk.active)
    return f"{desk.name}: {busy}/{desk.capacity} busy, {desk.queue.qsize()} waiting"


async def main() -> int:
    desk = Desk("first line", capacity=4)
    for n in range(10):
        await desk.queue.put(Ticket(n, f"customer {n}", opened=0.0))
    worker = asyncio.create_task(desk.serve())
    await asyncio.sleep(0.1)
    print(summary(desk))
    worker.cancel()
    return 0
'''

_KEYWORDS = frozenset(
    "from import def class return if else elif while for in not is None True False async await with as try "
    "except finally raise continue break pass lambda and or self".split()
)
_TOKEN = re.compile(r"#.*|\"[^\"]*\"?|'[^']*'?|\d+(?:\.\d+)?|\w+|.", re.S)
SYNTAX = {"keyword": rgb(0, 80, 200), "string": rgb(170, 70, 20), "comment": rgb(60, 130, 60),
          "number": rgb(150, 40, 150), "text": TEXT_COLOUR}


def highlight(line: str) -> list[int]:
    """One colour per character, as a simple editor's syntax highlighting would give."""
    colours: list[int] = []
    for m in _TOKEN.finditer(line):
        tok = m.group()
        if tok.startswith("#"):
            kind = "comment"
        elif tok[0] in "\"'":
            kind = "string"
        elif tok[0].isdigit():
            kind = "number"
        elif tok in _KEYWORDS:
            kind = "keyword"
        else:
            kind = "text"
        colours.extend([SYNTAX[kind]] * len(tok))
    return colours


def sentence(rng: np.random.Generator) -> str:
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(5, 16)))]
    return " ".join(words).capitalize() + "."


def wrap(font: Font, text: str, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels (a word longer than a line is cut)."""
    space = font.advance(" ")
    lines: list[str] = []
    line: list[str] = []
    used = 0
    for word in text.split():
        ww = font.width(word)
        if ww > width:
            word = font.fit(word, width) or word[:1]
            ww = font.width(word)
        if line and used + space + ww > width:
            lines.append(" ".join(line))
            line, used = [word], ww
        else:
            used = used + space + ww if line else ww
            line.append(word)
    if line:
        lines.append(" ".join(line))
    return lines
