"""``rejnet-agent ctl`` end to end against a ControlServer running a small handler in a thread."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import pytest

from agent.commands import agent_main
from agent.consent.terms import CURRENT_VERSION, load_terms
from agent.control.protocol import ControlError
from agent.control.server import ControlServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Handler:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.release: asyncio.Event | None = None

    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((cmd, args))
        if cmd == "status":
            return {"state": "active", "scope": "view", "viewer": {"address": "198.51.100.7"}, "since": None}
        if cmd == "credentials":
            return {"session": "123456789", "password": "k3mx7q"}
        if cmd == "consent":
            return {"consent_id": 7}
        if cmd == "reject":
            raise ControlError("bad_state", "no connection is waiting")
        if cmd == "accept" and self.release is not None:
            await self.release.wait()
        return {}


class ServerThread:
    """A ControlServer on its own event loop, as the agent would run it."""

    def __init__(self, path: str) -> None:
        self.handler = Handler()
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.handler, path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        self.thread.start()
        self.call(self.server.start())

    def publish(self, event: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.server.publish, event)

    def wait_for_subscribers(self, count: int) -> None:
        async def subscribers() -> int:
            return len(self.server._subscribers)
        deadline = time.monotonic() + 15
        while self.call(subscribers()) < count:
            assert time.monotonic() < deadline, "ctl events never subscribed"
            time.sleep(0.02)

    def stop(self) -> None:
        self.call(self.server.close())
        leftover = self.call(_other_tasks())
        assert leftover == [], f"ControlServer.close() left tasks running: {leftover}"
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _other_tasks() -> list[asyncio.Task[Any]]:
    await asyncio.sleep(0)
    return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]


@pytest.fixture
def agent():
    base = tempfile.mkdtemp(prefix="rjctl-")
    server = ServerThread(os.path.join(base, "run", "control.sock"))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def ctl(agent: ServerThread, *argv: str) -> int:
    return agent_main(["ctl", "--control", agent.server.path, *argv])


# A background job's children inherit SIGINT ignored (a shell without job control, e.g. CI started with
# `&`), and Python then installs no KeyboardInterrupt handler: the child gets it back, as in a terminal.
_WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "runpy.run_module('agent', run_name='__main__', alter_sys=True)")


def spawn(*argv: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-c", _WITH_CTRL_C, "ctl", *argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_status_human(agent, capsys):
    assert ctl(agent, "status") == 0
    out = capsys.readouterr().out
    assert "state: active" in out and "scope: view" in out and "since: -" in out
    assert 'viewer: {"address":"198.51.100.7"}' in out


def test_credentials_grouped_for_the_phone(agent, capsys):
    assert ctl(agent, "credentials") == 0
    assert capsys.readouterr().out.splitlines() == ["Session ID: 123 456 789", "Password:   k3mx7q"]


def test_json_prints_the_raw_reply(agent, capsys):
    assert ctl(agent, "credentials", "--json") == 0  # options are accepted after the command too
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"id": 1, "ok": True, "session": "123456789", "password": "k3mx7q"}


def test_consent_sends_the_packaged_terms_digest(agent, capsys):
    assert ctl(agent, "consent", "--scope", "control") == 0
    terms = load_terms()
    assert agent.handler.calls == [("consent", {"scope": "control", "terms_version": CURRENT_VERSION,
                                                "terms_sha256": terms.sha256})]
    out = capsys.readouterr().out
    assert "consent recorded: scope control" in out and "consent_id: 7" in out


def test_consent_with_a_terms_file(agent, tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_bytes("Warunki świadczenia usługi\n".encode())
    assert ctl(agent, "consent", "--scope", "view", "--terms", str(terms), "--terms-version", "test-v2") == 0
    assert agent.handler.calls[-1] == ("consent", {"scope": "view", "terms_version": "test-v2",
                                                   "terms_sha256": hashlib.sha256(terms.read_bytes()).hexdigest()})


def test_consent_with_a_missing_terms_file_is_a_usage_error(agent, tmp_path, capsys):
    assert ctl(agent, "consent", "--scope", "view", "--terms", str(tmp_path / "missing.txt")) == 2
    assert "cannot read terms file" in capsys.readouterr().err
    assert agent.handler.calls == []


@pytest.mark.parametrize("argv, expected", [
    (["set-scope", "control"], ("set_scope", {"scope": "control"})),
    (["terminate"], ("terminate", {})),
    (["terminate", "--reason", "customer asked"], ("terminate", {"reason": "customer asked"})),
    (["accept"], ("accept", {})),
])
def test_commands_reach_the_handler(agent, capsys, argv, expected):
    assert ctl(agent, *argv) == 0
    assert agent.handler.calls == [expected]
    assert capsys.readouterr().out.strip()


def test_error_reply_exits_1_with_one_line(agent, capsys):
    assert ctl(agent, "reject") == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "error: reject: bad_state: no connection is waiting"
    assert captured.out == ""


def test_error_reply_in_json_mode_still_prints_the_reply(agent, capsys):
    assert ctl(agent, "--json", "reject") == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["code"] == "bad_state"
    assert len(captured.err.splitlines()) == 1


def test_argument_rejected_by_the_agent(agent, capsys):
    assert ctl(agent, "terminate", "--reason", "x" * 201) == 2  # caught before sending
    assert "reason" in capsys.readouterr().err
    assert agent.handler.calls == []


def test_timeout(agent, capsys):
    agent.handler.release = agent.call(_make_event())
    started = time.monotonic()
    assert ctl(agent, "--timeout", "0.3", "accept") == 1
    assert time.monotonic() - started < 3
    assert "did not answer 'accept' within 0.3 s" in capsys.readouterr().err
    agent.loop.call_soon_threadsafe(agent.handler.release.set)


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


@pytest.mark.parametrize("argv", [[], ["set-scope", "root"], ["consent"], ["--timeout", "0", "status"],
                                  ["frobnicate"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        agent_main(["ctl", *argv])
    assert exited.value.code == 2


def test_no_agent_running(tmp_path, capsys):
    assert agent_main(["ctl", "--control", str(tmp_path / "control.sock"), "status"]) == 1
    assert "no agent is running" in capsys.readouterr().err


def test_no_traceback_from_a_shell(tmp_path):
    proc = spawn("--control", str(tmp_path / "nowhere" / "control.sock"), "credentials")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out == ""
    assert err.startswith("error: no agent is running") and len(err.splitlines()) == 1


def test_events_until_the_technician_ends_exit_4(agent):
    proc = spawn("--control", agent.server.path, "events")
    try:
        agent.wait_for_subscribers(1)
        agent.publish({"event": "state", "state": "active", "scope": "view"})
        agent.publish({"event": "viewer", "address": "198.51.100.7:50123"})
        agent.publish({"event": "ended", "by": "remote", "reason": "technician ended the session"})
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 4
    assert out.splitlines() == ["state state=active scope=view", "viewer address=198.51.100.7:50123",
                                'ended by=remote reason="technician ended the session"']
    assert "Traceback" not in err


def test_events_json_and_a_local_end_exit_0(agent):
    proc = spawn("--control", agent.server.path, "--json", "events")
    try:
        agent.wait_for_subscribers(1)
        agent.publish({"event": "password_rotated"})
        agent.publish({"event": "ended", "by": "local", "reason": "terminated"})
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {"event": "password_rotated"}, {"event": "ended", "by": "local", "reason": "terminated"}]


def test_events_consent_refused_exit_4(agent):
    proc = spawn("--control", agent.server.path, "events")
    try:
        agent.wait_for_subscribers(1)
        agent.publish({"event": "ended", "by": "local", "reason": "consent_refused"})
        proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 4


def test_events_stop_on_ctrl_c(agent):
    proc = spawn("--control", agent.server.path, "events")
    try:
        agent.wait_for_subscribers(1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_events_end_when_the_agent_goes_away(agent):
    proc = spawn("--control", agent.server.path, "events")
    try:
        agent.wait_for_subscribers(1)
        agent.call(agent.server.close())
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in err
