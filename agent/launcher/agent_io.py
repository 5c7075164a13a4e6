"""The agent as a background process, and the two control-socket connections to it.

Apart from the window logic and from Tk: this module starts ``rejnet-agent
--json``, reads its ready line (which names the control socket), opens one
control connection for commands and one subscribed to events, and turns
everything that happens into messages on a queue the window drains with Tk's
``after()``. Threads only block on pipes and sockets and put messages; they
never touch Tk or the logic object.

Messages (tuples, first item the kind)::

    ("ready", ready_line)          both connections are open, events subscribed
    ("reply", cmd, reply_dict)     the answer to send(cmd, ...); a lost agent answers ok=False
    ("event", event_dict)          one event from the subscription
    ("exited", code, stderr_tail)  the process ended; comes after its last event

The agent must not outlive the window: ``stop()`` asks it to terminate, then
sends SIGTERM, then SIGKILL; and on Linux the child gets SIGTERM from the
kernel if the launcher dies without cleaning up (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Sequence

from agent.control.client import ControlClient, ControlClientError
from agent.errors import UsageError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0    # per control request
STOP_GRACE = 5.0         # seconds for the agent to end after terminate / SIGTERM
STDERR_KEPT = 20         # lines of the agent's stderr kept for the failure page
_PR_SET_PDEATHSIG = 1


def default_agent_command() -> list[str]:
    """``rejnet-agent`` of this installation: this interpreter running ``python -m agent``."""
    return [sys.executable, "-m", "agent"]


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: the kernel sends the child SIGTERM when the thread that started it ends.

    The launcher starts agents from its main thread only (Tk's), which lives as long as the
    process. libc is loaded here, in the parent, so the child between fork and exec only makes
    two system calls (no import, no allocation that another thread's lock could block).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)
    return arm


class AgentLink:
    """One agent process and its control connections; make a new one for each start."""

    def __init__(self, args: Sequence[str], *, command: Sequence[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = [*(command or default_agent_command()), *args]
        self.env = env
        self.messages: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.control_path: str | None = None
        self._commands: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_KEPT)
        self._client: ControlClient | None = None
        self._events: ControlClient | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # --- life ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the process (call from the main thread: see _die_with_parent)."""
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("REJNET_PASSWORD", None)
        preexec = _die_with_parent(os.getpid())
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                         env=env, preexec_fn=preexec, close_fds=True)  # noqa: PLW1509
        except OSError as exc:
            raise UsageError(f"cannot start the agent {self.argv[0]}: {exc.strerror or exc}") from None
        self._thread(self._read_stdout, "agent-stdout")
        self._thread(self._read_stderr, "agent-stderr")
        self._thread(self._wait_exit, "agent-wait")

    def _thread(self, target: Any, name: str, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, cmd: str, args: dict[str, Any] | None = None) -> None:
        """Queue one command; its reply arrives as a ("reply", cmd, reply) message."""
        self._commands.put((cmd, dict(args or {})))

    def poll(self) -> list[tuple[Any, ...]]:
        """Every message waiting now."""
        found = []
        while True:
            try:
                found.append(self.messages.get_nowait())
            except queue.Empty:
                return found

    def stop(self, reason: str | None = None, grace: float = STOP_GRACE) -> int | None:
        """End the agent (terminate with ``reason``, SIGTERM, SIGKILL) and wait for it; returns its exit code."""
        with self._lock:
            self._stopping = True
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None and reason is not None and self.control_path is not None:
            try:
                with ControlClient(self.control_path, timeout=2.0) as client:
                    client.request("terminate", check=False, reason=reason)
            except ControlClientError:
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._commands.put(None)
        for client in (self._client, self._events):
            if client is not None:
                client.close()
        return proc.returncode

    # --- threads --------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout as stream:
            for line in stream:
                if self.control_path is not None:
                    continue  # the rest is the agent's own event log; we take events from the socket
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("event") == "ready" and isinstance(obj.get("control"), str):
                    self.control_path = obj["control"]
                    self._thread(self._connect, "agent-control", obj)

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.proc.stderr as stream:
            for line in stream:
                self._stderr.append(line.rstrip("\n"))
                log.debug("agent: %s", line.rstrip("\n"))

    def _wait_exit(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        for thread in list(self._threads):
            # the last event and the stderr lines are delivered before the exit
            if thread is not threading.current_thread() and thread.name != "agent-commands":
                thread.join(2.0)
        self._commands.put(None)
        self.messages.put(("exited", code, "\n".join(self._stderr)))

    def _connect(self, ready: dict[str, Any]) -> None:
        path = ready["control"]
        try:
            self._client = ControlClient(path, timeout=CONNECT_TIMEOUT)
            self._events = ControlClient(path, timeout=CONNECT_TIMEOUT)
            self._events.request("subscribe")
        except ControlClientError as exc:
            log.warning("cannot talk to the agent on %s: %s", path, exc)
            self._stderr.append(str(exc))
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()  # an agent we cannot steer must not run on
            return
        self._thread(self._run_commands, "agent-commands")
        self.messages.put(("ready", ready))
        try:
            for event in self._events.events():
                self.messages.put(("event", event))
        except ControlClientError as exc:
            with self._lock:
                stopping = self._stopping
            if not stopping:
                log.info("event connection to the agent ended: %s", exc)

    def _run_commands(self) -> None:
        while True:
            item = self._commands.get()
            if item is None:
                return
            cmd, args = item
            client = self._client
            try:
                if client is None:
                    raise ControlClientError("not connected to the agent")
                reply = client.request(cmd, check=False, **args)
            except (ControlClientError, UsageError) as exc:
                reply = {"id": None, "ok": False, "error": {"code": "unreachable", "message": str(exc)}}
            self.messages.put(("reply", cmd, reply))

