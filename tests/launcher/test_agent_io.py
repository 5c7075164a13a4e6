"""The agent I/O layer against a stand-in agent on the real control socket server: no display."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from agent.launcher.agent_io import AgentLink

FAKE = str(Path(__file__).with_name("fake_agent.py"))
ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def control():
    # a short private directory: socket paths are limited to 107 bytes
    with tempfile.TemporaryDirectory(prefix="rh") as folder:
        os.chmod(folder, 0o700)
        yield os.path.join(folder, "ctl", "control.sock")


def link_for(control: str, *extra: str) -> AgentLink:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return AgentLink(("--json", "--relay", "127.0.0.1:1"), command=[sys.executable, FAKE, "--control", control, *extra],
                     env=env)


def wait_for(link: AgentLink, kind: str, timeout: float = 20.0, seen: list | None = None) -> tuple:
    deadline = time.monotonic() + timeout
    seen = [] if seen is None else seen
    while time.monotonic() < deadline:
        for message in link.poll():
            seen.append(message)
            if message[0] == kind:
                return message
        time.sleep(0.02)
    raise AssertionError(f"no {kind!r} message within {timeout}s; saw {seen}")


def sent(control: str) -> list[dict]:
    with open(control + ".log") as log:
        return [json.loads(line) for line in log]


def test_ready_commands_events_and_a_clean_end(control):
    link = link_for(control)
    link.start()
    try:
        ready = wait_for(link, "ready")[1]
        assert ready["control"] == control
        link.send("credentials")
        reply = wait_for(link, "reply")
        assert reply[1] == "credentials" and reply[2]["password"] == "k3mx7q"
        link.send("set_scope", {"scope": "view"})
        seen: list = []
        wait_for(link, "event", seen=seen)
        link.send("terminate", {"reason": "ended by the customer"})
        seen = []
        exited = wait_for(link, "exited", seen=seen)
        assert exited[1] == 0
        events = [m[1]["event"] for m in seen if m[0] == "event"]
        assert "ended" in events, "the last event arrives before the exit"
        assert [c["cmd"] for c in sent(control)] == ["credentials", "set_scope", "terminate"]
    finally:
        link.stop()


def test_an_agent_that_cannot_start_reports_its_error_line(control):
    link = link_for(control, "--fail", "cannot reach the relay at 127.0.0.1:1: Connect call failed")
    link.start()
    exited = wait_for(link, "exited")
    assert exited[1] == 1
    assert "cannot reach the relay" in exited[2]


def test_stop_asks_then_insists(control):
    link = link_for(control, "--stubborn")
    link.start()
    wait_for(link, "ready")
    started = time.monotonic()
    code = link.stop("the customer closed the window", grace=1.0)
    assert code == -signal.SIGKILL
    assert time.monotonic() - started < 6
    assert any(c["cmd"] == "terminate" for c in sent(control)), "terminate is asked for first"


def test_stop_of_a_cooperative_agent_uses_terminate(control):
    link = link_for(control)
    link.start()
    wait_for(link, "ready")
    assert link.stop("the customer closed the window") == 0
    assert sent(control)[-1] == {"cmd": "terminate", "reason": "the customer closed the window"}


def test_a_lost_agent_answers_commands_with_an_error(control):
    link = link_for(control)
    link.start()
    wait_for(link, "ready")
    link.proc.kill()
    wait_for(link, "exited")
    link.send("status")
    # the command thread has ended with the process; a send after that gets no reply, never a hang
    assert [m for m in link.poll() if m[0] == "reply"] == []
    link.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_the_agent_dies_with_a_launcher_that_is_killed(control):
    script = (
        "import sys, time, os\n"
        "from agent.launcher.agent_io import AgentLink\n"
        f"link = AgentLink(('--json',), command=[sys.executable, {FAKE!r}, '--control', {control!r}])\n"
        "link.start()\n"
        "deadline = time.monotonic() + 20\n"
        "while time.monotonic() < deadline and not any(m[0] == 'ready' for m in link.poll()):\n"
        "    time.sleep(0.02)\n"
        "print(link.proc.pid, flush=True)\n"
        "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        agent_pid = int(parent.stdout.readline())
        os.kill(agent_pid, 0)  # alive
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(agent_pid, 0)
            except ProcessLookupError:
                break
            # reap it if it became our zombie (it is re-parented to init, normally)
            time.sleep(0.05)
        else:
            os.kill(agent_pid, signal.SIGKILL)
            pytest.fail("the agent outlived its killed launcher")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
