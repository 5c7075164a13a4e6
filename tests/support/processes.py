"""Subprocess helpers for end-to-end tests: the real commands, a byte tap, line readers."""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from agent.workloads.xvfb import stop_process

PY = sys.executable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    """Start ``python -m <args>`` with line-buffered pipes."""
    full_env = dict(os.environ)
    full_env.pop("REJNET_PASSWORD", None)
    full_env.update(env or {})
    full_env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([PY, "-m", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, **kwargs)


class Lines:
    """Reads a process's stdout lines in a thread so tests can wait for one with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(proc.stdout, self.queue), daemon=True).start()
        threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, out: queue.Queue[str]) -> None:
        with stream:
            for line in stream:
                out.put(line.rstrip("\n"))

    def _drain(self, stream: Any) -> None:
        with stream:
            for line in stream:
                self.stderr.append(line)

    def wait_json(self, predicate, timeout: float = 20.0) -> dict:
        """The first JSON line for which predicate(obj) is true."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line within {timeout}s; saw {self.seen[-10:]}; "
                                     f"stderr {''.join(self.stderr)[-2000:]}")
            try:
                line = self.queue.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.queue.empty():
                    raise AssertionError(f"process exited {self.proc.returncode}; saw {self.seen[-10:]}; "
                                         f"stderr {''.join(self.stderr)[-2000:]}") from None
                continue
            self.seen.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and predicate(obj):
                return obj


def stop_for_stderr(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """SIGTERM (the way a person stops a command), then everything it wrote to stderr; killed if it lingers."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    return stderr


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Terminate (then kill) a process; its pipes are closed by the Lines threads at EOF."""
    stop_process(proc, timeout)


class Tap:
    """A TCP forwarder on 127.0.0.1 that records every byte in both directions."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = bytearray()     # client -> target
        self.down = bytearray()   # target -> client
        self._lock = threading.Lock()
        self._closing = False
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            for args in ((client, server, self.up), (server, client, self.down)):
                thread = threading.Thread(target=self._pipe, args=args, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bytearray) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    record += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)  # pass the half-close on, keep the other direction
            except OSError:
                pass

    def everything(self) -> bytes:
        with self._lock:
            return bytes(self.up) + b"\x00" * 64 + bytes(self.down)

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Until something accepts connections on 127.0.0.1:``port`` (a server process has started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")
