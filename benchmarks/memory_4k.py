"""Memory and CPU of each server on a 4K screen with one viewer: is the agent light enough for an old PC?

    python -m benchmarks.memory_4k --out DIR [--seconds 10] [--servers rejnet,tigervnc,x11vnc] [--link none]
    python -m benchmarks.memory_4k --out DIR --quick     # the CI size: 4K still, 3 s, rejnet and tigervnc

One Xvfb at 3840x2160x24 with an xterm running ``top -d 0.5`` (a small change
twice a second, as on a customer's screen while they wait). Each server is
started fresh in turn, exactly as the link benchmark starts it
(benchmarks/linkbench/servers.py: for rejnet the whole chain, agent, relay and
viewer bridge, as separate processes), and read by the link benchmark's viewer
(one incremental request outstanding at all times, lossless encodings) through
the shaping proxy (unlimited by default). Once the viewer shows the first
picture, for ``--seconds``: the server process's (rejnet: the agent's) RSS
sampled every 50 ms, then its peak RSS (VmHWM of /proc/PID/status, which also
covers start-up and the first full update: what the customer's PC must have
free; or a sample, if larger: the kernel updates VmHWM lazily), RSS at the end, and CPU seconds (the scheduler's count, all threads) over the window.
At the end it also notes where the memory is: RSS split into anonymous, file
(libraries) and shared memory, and the largest mappings of /proc/PID/smaps (a
4K frame, 3840x2160x4 bytes, is one 31.6 MB anonymous mapping), so a
regression names its buffer.

Targets (ratios within one run, as PASS/FAIL lines; ``n/a`` when TigerVNC did
not run): agent peak RSS <= 1.5x TigerVNC's peak, agent CPU <= 1.5x TigerVNC's.
Writes report.md (also printed) and results.json to ``--out``. Exit status 1
only when nothing could be measured, never on a missed target.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.linkbench.proxy import TCP_IP_OVERHEAD, LinkSpec, parse_rate  # noqa: E402
from benchmarks.linkbench.targets import ratio_line  # noqa: E402

SIZE = (3840, 2160)
SECONDS = 10.0
QUICK_SECONDS = 3.0
SERVERS = "rejnet,tigervnc,x11vnc"
QUICK_SERVERS = "rejnet,tigervnc"
SAMPLE = 0.05             # seconds between RSS samples
LARGEST = 8               # mappings listed per server in "where the memory is"
SYNC_TIMEOUT = 60.0       # the first 4K picture, unshaped
TOP_START = 1.0           # seconds for top to draw its first screen
TOP_GEOMETRY = "160x50+240+180"
TOOLS = {"Xvfb": "xvfb", "xterm": "xterm", "top": "procps", "xsetroot": "x11-xserver-utils", "xdotool": "xdotool"}
# (field, label, limit, scale, unit): the two targets
LIMITS = (("peak_rss_kb", "peak RSS", 1.5, 1 / 1024, " MB"), ("cpu", "CPU over the window", 1.5, 1.0, " s"))


def proc_status(pid: Optional[int]) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a live process from /proc/PID/status; empty when it is gone."""
    out: dict[str, int] = {}
    if pid is None:
        return out
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def proc_pss(pid: Optional[int]) -> Optional[int]:
    """Pss (kB) of a live process from /proc/PID/smaps_rollup; None when it cannot be read.

    PSS counts a page once however many of the process's mappings hold it: the agent's one-frame
    capture maps its frame twice while a grab is compared (agent.capture.shared_frame), and RSS counts
    the pages both mappings touch twice.
    """
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def largest_mappings(pid: Optional[int], count: int = LARGEST) -> list[dict[str, Any]]:
    """The ``count`` mappings of a live process with the most resident memory, from /proc/PID/smaps.

    Each is ``{"rss_kb", "size_kb", "what"}``, ``what`` being the mapped file, or ``[anon]``, ``[heap]``...
    Empty when the process is gone or smaps cannot be read.
    """
    maps: list[dict[str, Any]] = []
    if pid is None:
        return maps
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                fields = line.split()
                if fields and "-" in fields[0] and not fields[0].endswith(":"):
                    start, _, end = fields[0].partition("-")
                    maps.append({"rss_kb": 0, "size_kb": (int(end, 16) - int(start, 16)) // 1024,
                                 "what": " ".join(fields[5:]) or "[anon]"})
                elif fields and fields[0] == "Rss:" and maps:
                    maps[-1]["rss_kb"] = int(fields[1])
    except (OSError, ValueError, IndexError):
        return []
    return sorted(maps, key=lambda m: -m["rss_kb"])[:count]


async def measure_server(name: str, display: str, link: LinkSpec, seconds: float, workdir: Path) -> dict[str, Any]:
    """Start one server, attach one viewer, wait for the first picture, then sample for ``seconds``."""
    from agent.rfb.pixelformat import NATIVE
    from agent.viewer.rfb_client import open_rfb
    from benchmarks.linkbench.cpu import cpu_reading, cpu_seconds
    from benchmarks.linkbench.measure import SETTINGS, Viewer
    from benchmarks.linkbench.servers import SERVERS as CLASSES

    server = CLASSES[name]()
    row: dict[str, Any] = {"server": name, "error": None}
    viewer: Optional[Viewer] = None
    try:
        await server.start(display=display, screen=None, link=link, workdir=workdir)
        t0 = time.monotonic()
        client = await open_rfb(*server.address, encodings=SETTINGS["lossless"].encodings, pixel_format=NATIVE,
                                timeout=SYNC_TIMEOUT)
        viewer = Viewer(client)
        viewer.start()
        while not viewer.log.last_pixels:
            if time.monotonic() - t0 > SYNC_TIMEOUT:
                raise TimeoutError(f"no picture within {SYNC_TIMEOUT:g} s")
            await viewer.wait_update(1.0)
        row["sync_seconds"] = round(time.monotonic() - t0, 3)
        pid = server.server_pid
        cpu0, down0, start = cpu_reading(pid), server.down.counter.total, time.monotonic()
        samples, pss = [], []
        while time.monotonic() - start < seconds:
            await asyncio.sleep(SAMPLE)
            rss = proc_status(pid).get("VmRSS")
            if rss is None:
                raise RuntimeError(f"{name} (pid {pid}) exited during the measurement")
            samples.append(rss)
            pss.append(proc_pss(pid) or 0)
        end = proc_status(pid)
        mappings = largest_mappings(pid)
        row.update(seconds=round(time.monotonic() - start, 3), cpu=cpu_reading(pid) - cpu0, cpu_total=cpu_seconds(pid),
                   # the kernel updates VmHWM lazily: a sample can exceed it by a few pages
                   peak_rss_kb=max(end["VmHWM"], *samples), vmhwm_kb=end["VmHWM"], max_sampled_rss_kb=max(samples),
                   max_sampled_pss_kb=max(pss), end_rss_kb=end["VmRSS"],
                   end_parts_kb={k: end[k] for k in ("RssAnon", "RssFile", "RssShmem") if k in end},
                   largest_mappings=mappings,
                   samples=len(samples), bytes_down=server.down.counter.total - down0,
                   updates=viewer.log.pixel_updates(start, time.monotonic()),
                   helpers={str(p): proc_status(p) for p in server.helper_pids})
        if viewer.error is not None:
            raise viewer.error
    except Exception as exc:  # one server failing must not end the benchmark: it is reported
        row["error"] = f"{type(exc).__name__}: {exc}".strip()[:300]
    finally:
        if viewer is not None:
            await viewer.close()
        await server.stop()
    return row


async def run(servers: list[str], seconds: float, link: LinkSpec, size: tuple[int, int], work: Path) -> list[dict]:
    """One display with ``top`` for all servers; each server measured in turn."""
    from benchmarks.linkbench.servers import Display
    from benchmarks.linkbench.workloads import XSession, prepare_display

    display = Display(*size)
    name = display.start()
    x = XSession(name, work)
    rows = []
    try:
        await prepare_display(name)
        _, region = await x.xterm("memory-4k-top", TOP_GEOMETRY, ["top", "-d", "0.5"])
        await asyncio.sleep(TOP_START)  # top's first screen drawn; it never settles after that
        print(f"Xvfb {name} {size[0]}x{size[1]}x24, top in an xterm at {region}, link {link.describe()}", flush=True)
        for srv in servers:
            workdir = work / srv
            workdir.mkdir()
            row = await measure_server(srv, name, link, seconds, workdir)
            print(f"{srv}: {_summary(row)}", flush=True)
            rows.append(row)
    finally:
        await x.close()
        display.stop()
    return rows


def _summary(row: dict) -> str:
    if row["error"]:
        return f"FAILED {row['error']}"
    return (f"peak RSS {row['peak_rss_kb'] / 1024:.1f} MB, end RSS {row['end_rss_kb'] / 1024:.1f} MB, "
            f"CPU {row['cpu']:.2f} s over {row['seconds']:.1f} s, {row['updates']} updates")


def report(rows: list[dict], meta: dict) -> str:
    """The table and the target lines."""
    mb = 1 / 1024
    lines = [f"## 4K memory and CPU: {meta['command']}", "",
             f"Xvfb {meta['size']}x24 with `top -d 0.5` in an xterm; one viewer pulling updates continuously "
             f"(link {meta['link']}); {meta['seconds']:g} s measured after the first picture. Server process "
             "only (rejnet: the agent; relay and bridge in results.json). Peak RSS: the larger of VmHWM (since start) "
             "and the sampled VmRSS (PSS, sampled alike, counts a page mapped twice once); "
             "CPU is the scheduler's count (schedstat, all threads) over the window. "
             "Shared 2-core machine: compare within this run.", "",
             "| server | peak RSS MB | max sampled RSS MB | max sampled PSS MB | RSS at end MB | CPU s | updates "
             "| down kB | sync s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['server']} | failed: {r['error']} | | | | | | | |")
            continue
        lines.append(f"| {r['server']} | {r['peak_rss_kb'] * mb:.1f} | {r['max_sampled_rss_kb'] * mb:.1f} | "
                     f"{r.get('max_sampled_pss_kb', 0) * mb:.1f} | {r['end_rss_kb'] * mb:.1f} | {r['cpu']:.2f} | {r['updates']} | {r['bytes_down'] / 1e3:.1f} | "
                     f"{r['sync_seconds']:.2f} |")
    where = [_where(r) for r in rows if not r["error"] and r.get("end_parts_kb")]
    if where:
        lines += ["", "### Where the memory is (at the end)", "",
                  "RSS split into anonymous / files (libraries) / shared memory, then the largest mappings "
                  "(MB resident, what is mapped; a 4K frame, 3840x2160x4 bytes, is one 31.6 MB anonymous "
                  "mapping).", ""] + where
    lines += ["", "### Targets", ""]
    found = {r["server"]: r for r in rows}
    missing = next((f"n/a ({srv} {'failed' if srv in found else 'not run'})" for srv in ("rejnet", "tigervnc")
                    if srv not in found or found[srv]["error"]), None)
    for key, label, limit, scale, unit in LIMITS:
        ours, theirs = (float("nan") if missing else found[s][key] * scale for s in ("rejnet", "tigervnc"))
        lines.append(ratio_line(f"4K: agent {label} vs tigervnc", ours, theirs, limit, missing=missing, unit=unit))
    return "\n".join(lines) + "\n"


def _where(row: dict) -> str:
    parts = row["end_parts_kb"]
    split = " / ".join(f"{parts.get(k, 0) / 1024:.1f}" for k in ("RssAnon", "RssFile", "RssShmem"))
    maps = ", ".join(f"{m['rss_kb'] / 1024:.1f} {m['what'].rsplit('/', 1)[-1]}"
                     for m in row.get("largest_mappings", []))
    return f"- {row['server']}: {split} MB; largest: {maps}"


def preflight(servers: list[str]) -> list[str]:
    """The servers that can run here; prints why the others (or everything) cannot."""
    from benchmarks.linkbench.servers import SERVERS as CLASSES

    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"cannot run: {', '.join(missing)} not installed "
              f"(apt-get install {' '.join(sorted({TOOLS[t] for t in missing}))})", file=sys.stderr)
        return []
    ok = []
    for name in servers:
        why = CLASSES[name].unavailable()
        if why:
            print(f"skipping server {name}: {why}", flush=True)
        else:
            ok.append(name)
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    from benchmarks.linkbench.servers import SERVERS as CLASSES

    p = argparse.ArgumentParser(prog="python -m benchmarks.memory_4k", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="where report.md and results.json go")
    p.add_argument("--seconds", type=float, default=None, help=f"measured window per server (default {SECONDS:g})")
    p.add_argument("--servers", default=None, help=f"default {SERVERS} ({QUICK_SERVERS} with --quick)")
    p.add_argument("--link", default="none", help="the shaping proxy's rate, e.g. 1m or 10m (50 ms one way), "
                   "or none (default): unlimited, no delay")
    p.add_argument("--size", default="%dx%d" % SIZE, help="the screen (default %(default)s)")
    p.add_argument("--quick", action="store_true", help=f"the CI size: {QUICK_SECONDS:g} s, {QUICK_SERVERS}, still 4K")
    args = p.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else QUICK_SECONDS if args.quick else SECONDS
    servers = [s.strip() for s in (args.servers or (QUICK_SERVERS if args.quick else SERVERS)).split(",") if s.strip()]
    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        link = LinkSpec(None) if args.link == "none" else LinkSpec(parse_rate(args.link), delay=0.05,
                                                                   overhead=TCP_IP_OVERHEAD)
    except ValueError as exc:
        p.error(str(exc))
    bad = [s for s in servers if s not in CLASSES]
    if bad or not servers or seconds <= 0 or len(size) != 2:
        p.error(f"--servers from {', '.join(CLASSES)}, --seconds > 0, --size WxH (got {', '.join(bad) or args.size})")
    servers = preflight(servers)
    if not servers:
        print("nothing to run (see above)", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="memory-4k-") as tmp:
        rows = asyncio.run(run(servers, seconds, link, size, Path(tmp)))
    meta = {"command": "python -m benchmarks.memory_4k " + " ".join(argv if argv is not None else sys.argv[1:]),
            "size": "%dx%d" % size, "seconds": seconds, "link": link.describe(), "servers": servers}
    text = report(rows, meta)
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n")
    print(text, flush=True)
    return 0 if any(not r["error"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
