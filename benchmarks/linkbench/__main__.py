"""``python -m benchmarks.linkbench``: our full chain against x11vnc and TigerVNC on slow links.

One Xvfb display (1920x1080x24) for the whole run; for every link, setting,
workload and repeat, each server is started fresh, one at a time, behind the
shaping proxy, and read by the same viewer. Results go to ``--out``: the
markdown table (also printed), one PNG per link and setting, and every run's
raw record in results.json. See README.md next to this file.
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

from benchmarks.linkbench.proxy import TCP_IP_OVERHEAD, LinkSpec, parse_rate

DEFAULT_LINKS = "256k,1m,10m"
DEFAULT_WORKLOADS = "typing,churn,paging,drag,video,idle,synthetic:typing,synthetic:scrolling"
DEFAULT_SERVERS = "rejnet,x11vnc,tigervnc"
DEFAULT_SETTINGS = "lossless,jpeg"
ONE_WAY_DELAY = 0.050
QUICK = dict(links="1m", workloads="typing", servers="rejnet,x11vnc", settings="lossless", repeat=1, seconds=3.5)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.linkbench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="where to write report.md, plots and results.json")
    p.add_argument("--links", default=None, help=f"link rates, each with {ONE_WAY_DELAY * 1e3:g} ms one-way delay "
                   f"(default {DEFAULT_LINKS})")
    p.add_argument("--delay", type=float, default=ONE_WAY_DELAY * 1e3, metavar="MS",
                   help="one-way delay of every link in ms (default %(default)s)")
    p.add_argument("--jitter", type=float, default=0.0, metavar="MS", help="one-way jitter in ms (default 0)")
    p.add_argument("--workloads", default=None, help=f"default {DEFAULT_WORKLOADS}")
    p.add_argument("--servers", default=None, help=f"default {DEFAULT_SERVERS}")
    p.add_argument("--settings", default=None, help=f"default {DEFAULT_SETTINGS}")
    p.add_argument("--repeat", type=int, default=None, help="runs per cell; medians are reported (default 3)")
    p.add_argument("--seconds", type=float, default=None, help="length of each workload's script (default 12)")
    p.add_argument("--psnr", type=float, default=30.0, help="PSNR (dB) that counts as 'shown' in the JPEG setting")
    p.add_argument("--quick", action="store_true",
                   help="the CI-sized run: 1m link, typing for 3.5 s, rejnet and x11vnc, lossless, once")
    p.add_argument("--netem-check", action="store_true",
                   help="first compare the proxy with tc netem in a network namespace (root only)")
    p.add_argument("--keep", action="store_true", help="keep the per-run work directories (logs) under --out")
    p.add_argument("--stages", default="", metavar="SPEC,...",
                   help="rejnet only: thread CPU per call of these agent methods (module:Qualified.name, e.g. "
                        "agent.service.updater:ViewerUpdater.prepare_update) over each run's script window, in "
                        "results.json and report.md (benchmarks/linkbench/stages.py)")
    p.add_argument("--profile", action="store_true",
                   help="rejnet only: a cProfile of the agent's event-loop thread, timed by thread CPU, over each "
                        "run's script window, in DIR/profiles/*.pstats (read with python -m pstats)")
    p.add_argument("--desktop", choices=("x11", "gnome"), default="x11",
                   help="x11: an Xvfb display (default); gnome: a headless GNOME Wayland session shared through "
                        "the agent's GNOME backend (rejnet only; typing and idle)")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill defaults (``--quick`` ones where asked) and validate; exits with status 2 on nonsense."""
    quick = QUICK if args.quick else {}
    defaults = dict(links=DEFAULT_LINKS, workloads=DEFAULT_WORKLOADS, servers=DEFAULT_SERVERS,
                    settings=DEFAULT_SETTINGS, repeat=3, seconds=12.0)
    if args.desktop == "gnome":
        from benchmarks.linkbench.gnome import WORKLOADS as GNOME_WORKLOADS

        defaults.update(workloads=",".join(GNOME_WORKLOADS), servers="rejnet")
        quick = {k: v for k, v in quick.items() if k not in ("workloads", "servers")}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick.get(key, value))
    from benchmarks.linkbench.measure import SETTINGS
    from benchmarks.linkbench.servers import SERVERS
    from benchmarks.linkbench.workloads import make_workload

    try:
        args.link_list = [(name, parse_rate(name)) for name in _csv(args.links)]
        args.workload_list = _csv(args.workloads)
        for name in args.workload_list:
            make_workload(name)
    except ValueError as exc:
        build_parser().error(str(exc))
    args.server_list = _csv(args.servers)
    args.setting_list = _csv(args.settings)
    if args.desktop == "gnome":
        from benchmarks.linkbench.gnome import WORKLOADS as GNOME_WORKLOADS

        other = [w for w in args.workload_list if w not in GNOME_WORKLOADS]
        if other or args.server_list != ["rejnet"]:
            build_parser().error(f"--desktop gnome runs the workloads {', '.join(GNOME_WORKLOADS)} on the rejnet "
                                 "server only (x11vnc and TigerVNC cannot capture a Wayland desktop)")
    bad = [s for s in args.server_list if s not in SERVERS] + [s for s in args.setting_list if s not in SETTINGS]
    if bad:
        build_parser().error(f"unknown server or setting: {', '.join(bad)} "
                             f"(servers: {', '.join(SERVERS)}; settings: {', '.join(SETTINGS)})")
    if args.repeat < 1 or args.seconds <= 0 or args.delay < 0 or args.jitter < 0:
        build_parser().error("--repeat must be >= 1, --seconds > 0, --delay and --jitter >= 0")
    args.stage_list = _csv(args.stages)
    if args.stage_list:
        from benchmarks.linkbench.stages import StageSpecError, resolve as resolve_stage

        try:
            for spec in args.stage_list:
                resolve_stage(spec)
        except StageSpecError as exc:
            build_parser().error(f"--stages: {exc}")
    if not (args.link_list and args.workload_list and args.server_list and args.setting_list):
        build_parser().error("nothing to run: every list needs at least one entry")
    return args


def preflight(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Servers and workloads that can run here; prints why the others are skipped and how to install them."""
    from benchmarks.linkbench.servers import SERVERS
    from benchmarks.linkbench.workloads import APT_HINT, editor, make_workload, missing_tools

    servers = []
    for name in args.server_list:
        why = SERVERS[name].unavailable()
        if why:
            print(f"skipping server {name}: {why}", flush=True)
        else:
            servers.append(name)
    workloads = []
    real_missing = missing_tools()
    if args.desktop == "gnome":
        from benchmarks.linkbench.gnome import unavailable

        why = unavailable()
        real_missing = [why] if why else []
    if {"typing", "churn"} & set(args.workload_list) and editor() != "vim":
        print("typing: vim is not installed (apt-get install vim): typing into the terminal itself instead",
              flush=True)
    for name in args.workload_list:
        wl = make_workload(name)
        needs = {"paging": ("less",)}.get(name, ())
        missing = real_missing + [t for t in needs if shutil.which(t) is None] if wl.kind == "x" else []
        if missing:
            print(f"skipping workload {name}: {', '.join(missing)} not installed ({APT_HINT})", flush=True)
        else:
            workloads.append(name)
    return servers, workloads


async def run_matrix(args: argparse.Namespace, servers: list[str], workloads: list[str], out: Path) -> list:
    from benchmarks.linkbench.measure import SETTINGS, Grabber
    from benchmarks.linkbench.run import measure_run
    from benchmarks.linkbench.servers import SERVERS, Display
    from benchmarks.linkbench.workloads import SCREEN, make_workload

    needs_x = any(make_workload(w).kind == "x" for w in workloads)
    display: Any = Display(*SCREEN)
    grabber: Any = None
    if needs_x and args.desktop == "gnome":
        from benchmarks.linkbench.gnome import GnomeDisplay, GnomeGrabber

        display = GnomeDisplay(*SCREEN)
        display.start()
        grabber = GnomeGrabber()
        print(f"headless GNOME (mutter {SCREEN[0]}x{SCREEN[1]}, Wayland) shared through the GNOME backend", flush=True)
    elif needs_x:
        display.start()
        grabber = Grabber(display.name)
        print(f"Xvfb {display.name} {SCREEN[0]}x{SCREEN[1]}x24", flush=True)
    cells = [(link, setting, wl, rep, srv) for link in args.link_list for setting in args.setting_list
             for wl in workloads for rep in range(args.repeat) for srv in servers
             if not (wl == "idle" and setting != args.setting_list[0])  # idle says the same in every setting
             and (make_workload(wl).kind == "x" or SERVERS[srv].serves_synthetic)]
    results = []
    started = time.monotonic()
    work_root = out / "work" if args.keep else Path(tempfile.mkdtemp(prefix="linkbench-"))
    try:
        for n, ((link_name, bps), setting, wl, rep, srv) in enumerate(cells, 1):
            spec = LinkSpec(bps, delay=args.delay / 1e3, jitter=args.jitter / 1e3, overhead=TCP_IP_OVERHEAD)
            workdir = work_root / f"{n:03d}-{srv}-{wl.replace(':', '_')}-{link_name}-{setting}-{rep}"
            workdir.mkdir(parents=True, exist_ok=True)
            server = SERVERS[srv]()
            server.stages = args.stage_list if srv == "rejnet" else []
            if args.profile and srv == "rejnet":
                (out / "profiles").mkdir(exist_ok=True)
                server.profile_file = (out / "profiles" / f"{workdir.name}.pstats").resolve()  # the agent's cwd differs
            res = await measure_run(server, make_workload(wl), SETTINGS[setting], spec, link_name, repeat=rep,
                                    seconds=args.seconds, display=display if needs_x else None, grabber=grabber,
                                    workdir=workdir, min_psnr=args.psnr)
            if server.profile_file is not None and server.profile_file.exists():
                res.profile = str(server.profile_file.relative_to(out.resolve()))
            results.append(res)
            elapsed = time.monotonic() - started
            eta = elapsed / n * (len(cells) - n)
            print(f"[{n}/{len(cells)} {elapsed:5.0f}s, ~{eta:4.0f}s left] {link_name:>4} {setting:8} {wl:20} "
                  f"{srv:8} #{rep + 1}: {_summary(res)}", flush=True)
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        if grabber is not None:
            grabber.close()
        display.stop()
        if not args.keep:
            shutil.rmtree(work_root, ignore_errors=True)
    return results


def _summary(res) -> str:
    if not res.ok:
        return f"FAILED {res.error}"
    lat = f"p50 {res.p50 * 1e3:.0f} ms p95 {res.p95 * 1e3:.0f} ms, " if res.latencies else ""
    return (f"{res.bytes_down / 1e3:.1f} kB down, {lat}{res.updates_per_s:.1f} upd/s, "
            f"cpu {res.cpu_server:.3f} s, missed {res.missed}/{res.steps_changed}"
            f"{'' if res.converged or res.workload.startswith('synthetic') else ', not converged'}; "
            f"harness lag p99 {res.loop_lag_p99 * 1e3:.0f} ms, steps late <= {res.step_lateness_max * 1e3:.0f} ms"
            f" {res.phases}")


def main(argv: Optional[list[str]] = None) -> int:
    args = resolve(build_parser().parse_args(argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.netem_check:
        from benchmarks.linkbench import netem

        asyncio.run(netem.cross_check([bps for _, bps in args.link_list], args.delay / 1e3))
    servers, workloads = preflight(args)
    if not servers or not workloads:
        print("nothing left to run (see the skip reasons above)", file=sys.stderr)
        return 1
    print(f"links {args.links} ({args.delay:g} ms one way), settings {','.join(args.setting_list)}, "
          f"{args.seconds:g} s per workload, repeat {args.repeat}", flush=True)
    results = asyncio.run(run_matrix(args, servers, workloads, out))
    from benchmarks.linkbench import report
    from benchmarks.linkbench.workloads import editor

    meta = {"links": args.links, "delay_ms": args.delay, "jitter_ms": args.jitter, "seconds": args.seconds,
            "repeat": args.repeat, "servers": servers, "workloads": workloads, "settings": args.setting_list,
            "psnr": args.psnr, "desktop": args.desktop, "stages": args.stage_list,
            "profile": args.profile, "command": "python -m benchmarks.linkbench " + " ".join(argv or sys.argv[1:]),
            "typing_editor": editor()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": [r.to_json() for r in results]}, indent=1))
    text = report.write(results, meta, out)
    print(text, flush=True)
    return 0 if any(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
