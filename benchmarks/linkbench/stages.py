"""Where the agent's CPU goes in a link-benchmark run: thread CPU per call of chosen agent methods.

``python -m benchmarks.linkbench --servers rejnet --stages SPEC,...`` runs the
agent through this module instead of ``python -m agent``: each
``module:Qualified.name`` in SPEC is wrapped to add up the calling thread's
CPU time (``time.thread_time``) and its calls. The harness asks for the
totals (SIGUSR1; they are written to a file) when the workload's script
starts and when it ends, so a run's ``stages`` cover exactly the window its
``cpu_server`` covers. A call nested in another call of the same method
counts once; different methods nest (a stage's time includes the stages it
calls). Coroutine functions are refused: their calls return at once.

With ``--profile`` (``$LINKBENCH_PROFILE`` names a file) the same two signals
start and stop a cProfile of the event loop's thread, timed by thread CPU
(with wall time, the thread blocked on an X round trip would show as the
agent's cost), and its stats go to that file: every function over the same
window, at the price of slowing each call (read the shares, not the times).
Grabs, encodes and compression handed to worker threads are not in it; time
them with stages.

Why a tool of its own: the agent's per-key CPU is a dozen steps of 0.05-0.3 ms,
each run with cold caches. A sampling profiler either misses them or, sampling
often enough, slows the agent into another regime; whole-run CPU has a
10 ms tick and +-20 % noise between runs on a shared machine.
"""
from __future__ import annotations

import cProfile
import functools
import importlib
import inspect
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

ENV_SPEC = "LINKBENCH_STAGES"
ENV_FILE = "LINKBENCH_STAGES_FILE"
ENV_PROFILE = "LINKBENCH_PROFILE"
SNAPSHOT_TIMEOUT = 5.0  # seconds the harness waits for the agent to write its totals


class StageSpecError(ValueError):
    """A --stages entry that names no wrappable method."""


def resolve(spec: str) -> tuple[Any, str, Callable[..., Any]]:
    """``module:Qualified.name`` -> (owner, attribute, function); StageSpecError says what is wrong."""
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname:
        raise StageSpecError(f"{spec!r}: expected module:Qualified.name, e.g. "
                             "agent.service.updater:ViewerUpdater.prepare_update")
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageSpecError(f"{spec!r}: cannot import {module_name}: {exc}") from None
    parts = qualname.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
        if owner is None:
            raise StageSpecError(f"{spec!r}: {module_name} has no {qualname}")
    fn = inspect.getattr_static(owner, parts[-1], None)
    if isinstance(fn, (staticmethod, classmethod)) or not callable(fn):
        raise StageSpecError(f"{spec!r}: not a plain function or method")
    if inspect.iscoroutinefunction(fn):
        raise StageSpecError(f"{spec!r}: a coroutine function (its calls return at once; wrap what it calls)")
    return owner, parts[-1], fn


def install(specs: list[str]) -> dict[str, list[float]]:
    """Wrap each of ``specs``; returns the live totals, spec -> [calls, thread CPU seconds]."""
    totals: dict[str, list[float]] = {}
    for spec in specs:
        owner, name, fn = resolve(spec)
        acc = totals[spec] = [0, 0.0]
        setattr(owner, name, _timed(fn, acc))
    return totals


def _timed(fn: Callable[..., Any], acc: list[float]) -> Callable[..., Any]:
    depth = [0]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if depth[0]:
            return fn(*args, **kwargs)
        depth[0] += 1
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[1] += time.thread_time() - start
            acc[0] += 1
            depth[0] -= 1
    return wrapper


def _writer(path: Path, totals: dict[str, list[float]]) -> Callable[..., None]:
    seq = [0]

    def write(*_: Any) -> None:
        seq[0] += 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seq": seq[0], "process_cpu": time.process_time(),
                                   "stages": {k: [int(v[0]), v[1]] for k, v in totals.items()}}))
        os.replace(tmp, path)
    return write


def _profiling(path: Path, then: Callable[..., None]) -> Callable[..., None]:
    """SIGUSR1's handler with a profile: the first signal starts cProfile on this (the event loop's) thread,
    the second stops it and writes its stats to ``path``; ``then`` (the totals' writer) runs outside the
    profiled span, and last at the end, so the harness, which waits for the totals, finds the stats."""
    profiler = cProfile.Profile(time.thread_time)
    signals = [0]

    def handle(*args: Any) -> None:
        signals[0] += 1
        if signals[0] == 2:
            profiler.disable()
            try:
                profiler.dump_stats(str(path))
            except OSError as exc:  # a full disk: no profile, but the agent (and the run) go on
                print(f"linkbench --profile: cannot write {path}: {exc}", file=sys.stderr, flush=True)
        then(*args)
        if signals[0] == 1:
            profiler.enable()
    return handle


def snapshot(pid: int, path: Path, timeout: float = SNAPSHOT_TIMEOUT) -> Optional[dict]:
    """Ask the agent (``pid``) for its totals now; None if it did not answer in ``timeout`` seconds."""
    before = _read(path)
    seq = before["seq"] if before else 0
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _read(path)
        if now is not None and now["seq"] > seq:
            return now
        time.sleep(0.01)
    return None


def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def window(before: Optional[dict], after: Optional[dict]) -> dict[str, dict[str, float]]:
    """Per stage between two snapshots: calls, seconds, ms a call; {} when either is missing."""
    if not before or not after:
        return {}
    out = {}
    for spec, (calls, seconds) in after["stages"].items():
        calls0, seconds0 = before["stages"].get(spec, (0, 0.0))
        n, t = calls - calls0, seconds - seconds0
        out[spec] = {"calls": n, "seconds": round(t, 6), "ms_per_call": round(1e3 * t / n, 4) if n else 0.0}
    return out


def main() -> int:
    """The agent's command line, with the stages of ``$LINKBENCH_STAGES`` timed (see the module docstring)."""
    specs = [s for s in os.environ.get(ENV_SPEC, "").split(",") if s]
    path = Path(os.environ[ENV_FILE])
    from agent.commands import agent_main

    handler = _writer(path, install(specs))
    profile = os.environ.get(ENV_PROFILE)
    signal.signal(signal.SIGUSR1, _profiling(Path(profile), handler) if profile else handler)
    return agent_main()


if __name__ == "__main__":
    sys.exit(main())
