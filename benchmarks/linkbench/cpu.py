"""The CPU time of a server process over a benchmark window (agent, peers, helpers and Xvfb alike)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuReading:
    """A process's CPU time at one moment, two ways; subtract two readings for the time in between.

    ``exact``: the scheduler's nanosecond count (``/proc/<pid>/task/*/schedstat``) summed over the threads
    alive now. ``ticks``: utime + stime from ``/proc/<pid>/stat``, which keeps the time of threads that
    have exited but counts in clock ticks (10 ms): on a 0.1 s figure that is a tenth either way.
    """

    exact: Optional[float]
    ticks: float

    def __sub__(self, earlier: "CpuReading") -> float:
        """Seconds between the two readings: exact, unless a thread's time left with it in between (the
        ticks then exceed the exact count by more than their rounding), or schedstat was missing."""
        ticks = self.ticks - earlier.ticks
        if self.exact is None or earlier.exact is None:
            return ticks
        exact = self.exact - earlier.exact
        return ticks if ticks - exact > 2.0 / CLK_TCK else exact


def cpu_reading(*pids: Optional[int]) -> CpuReading:
    """The CPU time the processes ``pids`` have used so far, together (zero for one that is not there)."""
    exact = [_schedstat_seconds(pid) for pid in pids]
    return CpuReading(None if None in exact else sum(exact),  # type: ignore[arg-type]
                      sum(cpu_seconds(pid) for pid in pids))


def _schedstat_seconds(pid: Optional[int]) -> Optional[float]:
    if pid is None:
        return 0.0
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # the thread exited since the listing: the ticks keep its time
            continue
        except (OSError, ValueError, IndexError):  # no schedstat in this kernel
            return None
    return total / 1e9


def cpu_seconds(pid: Optional[int]) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat, in clock ticks; 0.0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)
