"""Cross-check the shaping proxy against the kernel's shaper (``--netem-check``).

A network namespace joined to ours by a veth pair, with ``tc qdisc netem
rate R delay D`` on both ends, carries the same two measurements as the
proxy: a bulk transfer (throughput) and small ping-pongs (RTT). Both are
printed side by side. Needs root, ``ip`` and ``tc``; without them the check
is skipped with the reason printed. Kernels without the netem qdisc (many
containers' kernels lack sch_netem) get ``tbf`` instead, which shapes the
rate but adds no delay; the printout says so, and the delay is then
cross-checked only by the proxy's own figures.

Run as ``python -m benchmarks.linkbench.netem serve HOST PORT`` this module is
the measuring server inside the namespace.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from benchmarks.linkbench.proxy import TCP_IP_OVERHEAD, LinkSpec, ShapingProxy, rate_label

PINGS = 10
PING_SIZE = 64
TRANSFER_SECONDS = 3.0
MIN_TRANSFER = 64 * 1024
SUBNET = "10.231.{n}.{host}"
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the measuring server and client


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """'P' + n: echo n bytes back, repeatedly; 'T' + u64 size: swallow size bytes, answer b'K'."""
    try:
        while True:
            kind = await reader.readexactly(1)
            if kind == b"P":
                writer.write(await reader.readexactly(PING_SIZE))
            elif kind == b"T":
                (size,) = struct.unpack("!Q", await reader.readexactly(8))
                left = size
                while left:
                    left -= len(await reader.read(min(left, 65536)))
                writer.write(b"K")
            else:
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(_handle, host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def measure(host: str, port: int, transfer: int) -> tuple[float, float]:
    """(throughput in bit/s, median RTT in s) against a server running ``_handle``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    try:
        rtts = []
        for _ in range(PINGS):
            t = time.monotonic()
            writer.write(b"P" + b"x" * PING_SIZE)
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(PING_SIZE), 10)
            rtts.append(time.monotonic() - t)
        rtt = statistics.median(rtts)
        t = time.monotonic()
        writer.write(b"T" + struct.pack("!Q", transfer))
        chunk = bytes(65536)
        left = transfer
        while left:
            n = min(left, len(chunk))
            writer.write(chunk[:n])
            await writer.drain()
            left -= n
        await asyncio.wait_for(reader.readexactly(1), 120)
        seconds = time.monotonic() - t - rtt  # the answer's trip back is not transfer time
        return transfer * 8 / max(seconds, 1e-6), rtt
    finally:
        writer.close()


# ---------------------------------------------------------------- the namespace


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def unavailable() -> Optional[str]:
    """Why the kernel cross-check cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "tc netem needs Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (run the benchmark as root for --netem-check)"
    missing = [t for t in ("ip", "tc") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install iproute2)"
    return None


class Namespace:
    """A namespace with one veth to it; qdiscs on both ends shape both directions."""

    def __init__(self) -> None:
        n = os.getpid() % 200 + 20
        self.name = f"linkbench{os.getpid()}"
        self.outer, self.inner = f"lbo{os.getpid() % 100000}", f"lbi{os.getpid() % 100000}"
        self.outer_ip, self.inner_ip = SUBNET.format(n=n, host=1), SUBNET.format(n=n, host=2)
        self.qdisc = ""

    def create(self) -> None:
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _run("ip", "link", "set", self.inner, "netns", self.name)
        _run("ip", "addr", "add", f"{self.outer_ip}/30", "dev", self.outer)
        _run("ip", "link", "set", self.outer, "up")
        inside = ("ip", "netns", "exec", self.name)
        _run(*inside, "ip", "addr", "add", f"{self.inner_ip}/30", "dev", self.inner)
        _run(*inside, "ip", "link", "set", self.inner, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")

    def shape(self, rate_bps: float, delay: float) -> str:
        """Apply netem (or tbf when netem is missing) on both ends; returns what was applied."""
        rate = f"{int(rate_bps)}bit"
        limit = str(max(int(rate_bps / 8 * (delay + 0.5) / 1500) + 100, 1000))  # packets: no drops in a test
        netem = ["netem", "rate", rate, "delay", f"{delay * 1e3:g}ms", "limit", limit]
        burst = str(max(int(rate_bps / 8 / 100), 3000))
        tbf = ["tbf", "rate", rate, "burst", burst, "latency", "1s"]
        for qdisc, args in (("netem", netem), ("tbf", tbf)):
            done = [_run("tc", "qdisc", "replace", "dev", self.outer, "root", *args, check=False),
                    _run("ip", "netns", "exec", self.name, "tc", "qdisc", "replace", "dev", self.inner, "root",
                         *args, check=False)]
            if all(p.returncode == 0 for p in done):
                self.qdisc = qdisc
                return qdisc
        raise RuntimeError(f"tc refused both netem and tbf: {done[0].stderr.strip() or done[1].stderr.strip()}")

    def delete(self) -> None:
        _run("ip", "link", "del", self.outer, check=False)
        _run("ip", "netns", "del", self.name, check=False)


async def cross_check(rates: list[float], delay: float, port: int = 7409) -> list[dict]:
    """Print (and return) proxy vs kernel throughput and RTT for each rate; prints why when skipped."""
    why = unavailable()
    rows: list[dict] = []
    ns: Optional[Namespace] = None
    server: Optional[asyncio.subprocess.Process] = None
    if why is None:
        ns = Namespace()
        try:
            ns.create()
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
            server = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns.name, sys.executable, "-m", "benchmarks.linkbench.netem", "serve",
                ns.inner_ip, str(port), stdout=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT))
            assert server.stdout is not None
            await asyncio.wait_for(server.stdout.readline(), 15)
        except (subprocess.CalledProcessError, asyncio.TimeoutError, OSError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            why = f"could not build the namespace: {str(detail).strip()}"
    local = await asyncio.start_server(_handle, "127.0.0.1", 0)
    local_port = local.sockets[0].getsockname()[1]
    try:
        print(f"--netem-check: {delay * 1e3:g} ms one way"
              + (f"; kernel side skipped: {why}" if why else ""), flush=True)
        for bps in rates:
            transfer = max(int(bps / 8 * TRANSFER_SECONDS), MIN_TRANSFER)
            spec = LinkSpec(bps, delay=delay, overhead=TCP_IP_OVERHEAD)
            async with ShapingProxy(("127.0.0.1", local_port), spec, spec) as proxy:
                assert proxy.address is not None
                p_rate, p_rtt = await measure(*proxy.address, transfer)
            row = {"rate": bps, "proxy_bps": p_rate, "proxy_rtt": p_rtt, "kernel": None}
            line = (f"  {rate_label(bps):>5}bit/s  proxy: {p_rate / 1e3:8.1f} kbit/s, RTT {p_rtt * 1e3:6.1f} ms")
            if ns is not None and why is None:
                qdisc = ns.shape(bps, delay)
                k_rate, k_rtt = await measure(ns.inner_ip, port, transfer)
                row.update(kernel=qdisc, kernel_bps=k_rate, kernel_rtt=k_rtt)
                note = "" if qdisc == "netem" else " (netem missing in this kernel: tbf, rate only, no delay)"
                line += f" | tc {qdisc}: {k_rate / 1e3:8.1f} kbit/s, RTT {k_rtt * 1e3:6.1f} ms{note}"
            print(line, flush=True)
            rows.append(row)
    finally:
        local.close()
        if server is not None and server.returncode is None:
            server.terminate()
            await server.wait()
        if ns is not None:
            ns.delete()
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 4:
        asyncio.run(serve(sys.argv[2], int(sys.argv[3])))
    else:
        sys.exit("usage: python -m benchmarks.linkbench.netem serve HOST PORT")
