"""The link benchmark's report: a markdown table with target lines, and PNG plots (Pillow only).

Every figure in a cell is the median over that cell's successful repeats.
Latency percentiles are computed per run, then the medians of those taken.
The targets compare servers measured in the same run, as ratios.
"""
from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional

from PIL import Image, ImageDraw, ImageFont

from benchmarks.linkbench.targets import target_lines

COLOURS = {"rejnet": (31, 119, 180), "x11vnc": (255, 127, 14), "tigervnc": (44, 160, 44)}
OTHER = (120, 120, 120)
PANEL = (520, 250)
MARGIN = dict(left=70, right=20, top=30, bottom=40)


def _median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(vals) if vals else math.nan


def _fmt(v: float, scale: float = 1.0, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v))):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v * scale:.{digits}f}"


class Cell:
    """The repeats of one (link, setting, workload, server)."""

    def __init__(self, runs: list) -> None:
        self.runs = runs
        self.ok = [r for r in runs if r.ok]

    def med(self, attr: str) -> float:
        return _median(getattr(r, attr) for r in self.ok)

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.runs if not r.ok]


def group(results: list) -> dict[tuple, Cell]:
    cells: dict[tuple, list] = defaultdict(list)
    for r in results:
        cells[(r.link, r.setting, r.workload, r.server)].append(r)
    return {k: Cell(v) for k, v in cells.items()}


def _fidelity(cell: Cell, lossless: bool) -> str:
    if not cell.ok:
        return "-"
    if cell.ok[0].workload.startswith("synthetic"):
        if lossless:
            hits = sum(r.frame_match is not None for r in cell.ok)
            return f"frame match {hits}/{len(cell.ok)}"
        return f"{_fmt(cell.med('psnr'), digits=1)} dB"
    if lossless:
        exact = sum(r.exact_fraction == 1.0 for r in cell.ok)
        return f"exact {exact}/{len(cell.ok)} ({_fmt(cell.med('exact_fraction'), 100, 2)}%)"
    return f"{_fmt(cell.med('psnr'), digits=1)} dB"


def table(results: list) -> str:
    cells = group(results)
    lines = []
    real = {k: c for k, c in cells.items() if not k[2].startswith("synthetic") and k[2] != "idle"}
    if real:
        lines += ["### Real X workloads", "",
                  "| link | setting | workload | server | runs | down kB | up kB | first kB | p50 ms | p95 ms "
                  "| shown/steps | upd/s | server CPU s | Xvfb CPU s | final frame |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (link, setting, wl, srv), c in real.items():
            shown = _median((len(r.latencies) for r in c.ok))
            steps = _median((r.steps_changed for r in c.ok))
            lines.append(f"| {link} | {setting} | {wl} | {srv} | {len(c.ok)}/{len(c.runs)} | "
                         f"{_fmt(c.med('bytes_down'), 1e-3, 1)} | {_fmt(c.med('bytes_up'), 1e-3, 1)} | "
                         f"{_fmt(c.med('sync_bytes'), 1e-3, 1)} | {_fmt(c.med('p50'), 1e3)} | {_fmt(c.med('p95'), 1e3)} | "
                         f"{_fmt(shown)}/{_fmt(steps)} | {_fmt(c.med('updates_per_s'), digits=1)} | "
                         f"{_fmt(c.med('cpu_server'), digits=3)} | {_fmt(c.med('cpu_xvfb'), digits=2)} | "
                         f"{_fidelity(c, setting == 'lossless')} |")
        lines.append("")
    idle = {k: c for k, c in cells.items() if k[2] == "idle"}
    if idle:
        lines += ["### Idle screen (after the first full update)", "",
                  "| link | server | runs | down bytes | down B/s | up bytes | server CPU % | Xvfb CPU s |",
                  "|---|---|---|---|---|---|---|---|"]
        for (link, setting, wl, srv), c in idle.items():
            rate = _median(r.bytes_down / r.seconds for r in c.ok if r.seconds)
            lines.append(f"| {link} | {srv} | {len(c.ok)}/{len(c.runs)} | {_fmt(c.med('bytes_down'))} | "
                         f"{_fmt(rate, digits=1)} | {_fmt(c.med('bytes_up'))} | {_fmt(c.med('cpu_percent'), digits=2)} | "
                         f"{_fmt(c.med('cpu_xvfb'), digits=2)} |")
        lines.append("")
    synth = {k: c for k, c in cells.items() if k[2].startswith("synthetic")}
    if synth:
        lines += ["### Synthetic screens (our agent only: `--screen synthetic:NAME:1920x1080`)", "",
                  "| link | setting | workload | runs | down kB | up kB | first kB | upd/s | agent CPU s | final frame |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for (link, setting, wl, srv), c in synth.items():
            lines.append(f"| {link} | {setting} | {wl} | {len(c.ok)}/{len(c.runs)} | {_fmt(c.med('bytes_down'), 1e-3, 1)} | "
                         f"{_fmt(c.med('bytes_up'), 1e-3, 1)} | {_fmt(c.med('sync_bytes'), 1e-3, 1)} | "
                         f"{_fmt(c.med('updates_per_s'), digits=1)} | {_fmt(c.med('cpu_server'), digits=3)} | "
                         f"{_fidelity(c, setting == 'lossless')} |")
        lines.append("")
    failed = [(k, e) for k, c in cells.items() for e in c.errors]
    if failed:
        lines += ["### Failed runs", ""] + [f"- {' / '.join(k)}: {e}" for k, e in failed] + [""]
    return "\n".join(lines)


def targets(results: list) -> str:
    """The targets, each a PASS/FAIL line (or 'n/a (SERVER not run)' when a cell is missing)."""
    cells = group(results)

    def med(link: str, setting: str, wl: str, srv: str, attr: str) -> float:
        c = cells.get((link, setting, wl, srv))
        return c.med(attr) if c else math.nan

    return "\n".join(["### Targets", ""] + target_lines(cells, med)) + "\n"


# ---------------------------------------------------------------- plots


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _nice_max(v: float) -> float:
    if not v or math.isnan(v) or v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _panel(img: Image.Image, origin: tuple[int, int], title: str, xlabel: str,
           lines: dict[str, list[tuple[float, float]]], xmax: float, ymax: float, *, steps: bool = False,
           legend_top: bool = True) -> None:
    """One plot: axes with 5 ticks each, a line per server, the legend in a corner the lines leave free."""
    draw = ImageDraw.Draw(img)
    font, small = _font(13), _font(11)
    ox, oy = origin
    w, h = PANEL
    x0, y0 = ox + MARGIN["left"], oy + MARGIN["top"]
    x1, y1 = ox + w - MARGIN["right"], oy + h - MARGIN["bottom"]
    draw.text((x0, oy + 6), title, fill=(0, 0, 0), font=font)
    draw.rectangle((x0, y0, x1, y1), outline=(0, 0, 0))
    xmax, ymax = _nice_max(xmax), _nice_max(ymax)
    for i in range(6):
        fx, fy = x0 + (x1 - x0) * i / 5, y1 - (y1 - y0) * i / 5
        draw.line((fx, y1, fx, y1 + 4), fill=(0, 0, 0))
        draw.line((x0 - 4, fy, x0, fy), fill=(0, 0, 0))
        if 0 < i < 5:
            draw.line((x0 + 1, fy, x1 - 1, fy), fill=(230, 230, 230))
        draw.text((fx - 10, y1 + 6), f"{xmax * i / 5:g}", fill=(0, 0, 0), font=small)
        draw.text((ox + 4, fy - 6), f"{ymax * i / 5:g}", fill=(0, 0, 0), font=small)
    draw.text(((x0 + x1) // 2 - 40, y1 + 22), xlabel, fill=(60, 60, 60), font=small)

    def px(x: float, y: float) -> tuple[float, float]:
        return (x0 + (x1 - x0) * min(max(x / xmax, 0), 1), y1 - (y1 - y0) * min(max(y / ymax, 0), 1))

    for n, (name, pts) in enumerate(lines.items()):
        colour = COLOURS.get(name, OTHER)
        if len(pts) >= 2:
            path = []
            for a, b in zip(pts, pts[1:]):
                path.append(px(*a))
                if steps:
                    path.append(px(b[0], a[1]))
            path.append(px(*pts[-1]))
            draw.line(path, fill=colour, width=2)
        elif pts:
            cx, cy = px(*pts[0])
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=colour)
        lx, ly = (x0 + 10, y0 + 8 + 16 * n) if legend_top else (x1 - 110, y1 - 8 - 16 * (len(lines) - n))
        draw.rectangle((lx, ly, lx + 10, ly + 10), fill=colour)
        draw.text((lx + 15, ly - 2), name, fill=(0, 0, 0), font=small)


def plot(results: list, link: str, setting: str, path: Path) -> Optional[Path]:
    """Per workload: bytes over time (first successful repeat) and the latency CDF (all repeats)."""
    runs = [r for r in results if r.ok and r.link == link and r.setting == setting]
    workloads = list(dict.fromkeys(r.workload for r in runs))
    if not workloads:
        return None
    img = Image.new("RGB", (2 * PANEL[0], PANEL[1] * len(workloads) + 30), "white")
    ImageDraw.Draw(img).text((10, 8), f"link {link} ({setting}): bytes sent to the viewer, and update latency",
                             fill=(0, 0, 0), font=_font(15))
    for row, wl in enumerate(workloads):
        mine = [r for r in runs if r.workload == wl]
        servers = list(dict.fromkeys(r.server for r in mine))
        bytes_lines, cdf_lines = {}, {}
        for srv in servers:
            first = next(r for r in mine if r.server == srv)
            bytes_lines[srv] = [(t, b / 1e3) for t, b in first.series]
            lat = sorted(v * 1e3 for r in mine if r.server == srv for v in r.latencies)
            if lat:
                cdf_lines[srv] = [(v, 100.0 * (i + 1) / len(lat)) for i, v in enumerate(lat)]
        xmax = max((p[0] for pts in bytes_lines.values() for p in pts), default=1.0)
        ymax = max((p[1] for pts in bytes_lines.values() for p in pts), default=1.0)
        top = 30 + row * PANEL[1]
        _panel(img, (0, top), f"{wl}: kB sent to the viewer (cumulative)", "seconds", bytes_lines, xmax, ymax,
               steps=True)
        if cdf_lines:
            lmax = max(p[0] for pts in cdf_lines.values() for p in pts)
            _panel(img, (PANEL[0], top), f"{wl}: % of steps shown within (ms)", "ms from screen change to viewer",
                   cdf_lines, lmax, 100.0, steps=True, legend_top=False)
        else:
            ImageDraw.Draw(img).text((PANEL[0] + 80, top + PANEL[1] // 2), "no latency for this workload",
                                     fill=(90, 90, 90), font=_font(13))
    img.save(path)
    return path


def stages_table(results: list) -> str:
    """The --stages figures: per cell and agent method, median calls, CPU and ms a call over the runs."""
    rows = []
    for (link, setting, workload, server), cell in group(results).items():
        specs = dict.fromkeys(spec for r in cell.ok for spec in r.stages)
        for spec in specs:
            got = [r.stages[spec] for r in cell.ok if spec in r.stages]
            rows.append(f"| {link} | {setting} | {workload} | {spec} | {_fmt(_median(g['calls'] for g in got))} | "
                        f"{_fmt(_median(g['seconds'] for g in got), 1e3, 1)} | "
                        f"{_fmt(_median(g['ms_per_call'] for g in got), digits=3)} |")
    if not rows:
        return ""
    return "\n".join(["### Agent stages (--stages)", "",
                      "Thread CPU of each wrapped agent method over the script window (a stage's time includes the "
                      "stages it calls); medians over the runs.", "",
                      "| link | setting | workload | method | calls | CPU ms | ms a call |",
                      "|---|---|---|---|---|---|---|", *rows, ""])


PROFILE_TOP = 15  # functions listed per profiled run


def profile_table(results: list, out: Path) -> str:
    """The --profile runs: per run, its stats file and the functions with the largest share of own time."""
    import pstats

    parts = []
    for r in results:
        if not r.profile or not (out / r.profile).exists():
            continue
        stats = pstats.Stats(str(out / r.profile)).stats  # type: ignore[attr-defined]
        total = sum(entry[2] for entry in stats.values()) or 1.0
        top = sorted(stats.items(), key=lambda item: -item[1][2])[:PROFILE_TOP]
        rows = [f"| {_where(key)} | {entry[1]} | {100 * entry[2] / total:.1f} | {100 * entry[3] / total:.1f} |"
                for key, entry in top]
        parts += [f"{r.link} {r.setting} {r.workload} #{r.repeat + 1}: `{r.profile}`", "",
                  "| function | calls | own % | with callees % |", "|---|---|---|---|", *rows, ""]
    if not parts:
        return ""
    return "\n".join(["### Agent profiles (--profile)", "",
                       "cProfile of the agent's event-loop thread over the script window, by thread CPU; profiling "
                       "slows every call, so read the shares. Worker threads are not in it. More: "
                       "`python -m pstats FILE` (sort tottime, stats 30; callers NAME).", "", *parts])


def _where(key: tuple) -> str:
    """A pstats key as ``path:line(function)``, the path from the repository or the package down."""
    filename, line, name = key
    if filename == "~":
        return name.replace("|", "/")
    library = re.search(r"/site-packages/(.*)", filename) or re.search(r"/lib/python3\.\d+/(.*)", filename)
    if library:
        filename = library.group(1)
    else:
        root = str(Path(__file__).resolve().parents[2]) + "/"
        filename = filename[len(root):] if filename.startswith(root) else filename
    return f"{filename}:{line}({name})"


def write(results: list, meta: dict, out: Path) -> str:
    """Write report.md and the plots into ``out``; returns the markdown text."""
    plots = []
    for link in dict.fromkeys(r.link for r in results):
        for setting in dict.fromkeys(r.setting for r in results):
            p = plot(results, link, setting, out / f"plot-{link}-{setting}.png")
            if p is not None:
                plots.append(p.name)
    head = [f"## Link benchmark: {meta.get('command', '')}", "",
            f"Links {meta.get('links')} with {meta.get('delay_ms'):g} ms one-way delay each way; "
            f"{meta.get('seconds'):g} s per workload; medians of {meta.get('repeat')} repeat(s). "
            "Bytes are counted at the shaping proxy: for rejnet on the agent <-> relay hop (channel, relay "
            "protocol and keepalives included), for peers between viewer and server. `down kB` is what the "
            "server sent after the viewer was in sync; `first kB` the initial full update. CPU is "
            "the scheduler's count (schedstat, all threads) over the same window (rejnet: the agent "
            "process). Shared 2-core machine: expect noise.", ""]
    text = "\n".join(head) + "\n" + table(results) + "\n" + targets(results)
    stages = stages_table(results)
    if stages:
        text += "\n" + stages
    profiles = profile_table(results, out)
    if profiles:
        text += "\n" + profiles
    if plots:
        text += "\nPlots: " + ", ".join(plots) + "\n"
    (out / "report.md").write_text(text)
    return text
