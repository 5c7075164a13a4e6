"""Does a kernel release the GIL? Another Python thread must keep running while it works."""
from __future__ import annotations

import threading
from typing import Callable


def assert_releases_gil(work: Callable[[], object], min_ticks: int = 1000) -> None:
    """Run ``work()`` while a thread counts; a kernel holding the GIL leaves it barely any turns."""
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        before = ticks
        work()
        during = ticks - before
    finally:
        done.set()
        t.join()
    assert during > min_ticks, "the counting thread barely ran: the GIL was held"
