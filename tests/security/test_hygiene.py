"""What an attacker on the same machine, or a hostile relay or agent, could get from our processes' surroundings.

Each test does what the attacker would: read a crashed process's core limit,
look at the ledger's files, pre-create the control directory, or send escape
sequences for the technician's terminal in a reason string.
"""
from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import time

import pytest

from agent.consent.ledger import ConsentLedger
from agent.control.paths import default_control_path
from agent.errors import printable
from tests.support.processes import PY, free_port

ESCAPES = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b[31m\u202eevil"


def test_agent_process_cannot_dump_core(tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), REJNET_PASSWORD="")
    proc = subprocess.Popen([PY, "-m", "agent", "--listen", f"127.0.0.1:{free_port()}", "--screen",
                             "synthetic:idle:64x48", "--consent-db", str(tmp_path / "c.db"), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # the ready line: the agent is up
        assert json.loads(line)["event"] == "ready", line
        with open(f"/proc/{proc.pid}/limits") as fh:
            limits = fh.read()
        row = next(r for r in limits.splitlines() if r.startswith("Max core file size"))
        assert row.split()[4:6] == ["0", "0"], row  # soft and hard limit
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_ledger_files_are_private_including_wal_and_shm(tmp_path):
    old = os.umask(0o022)  # a permissive umask, as many desktops have
    try:
        directory = tmp_path / "share"
        directory.mkdir(mode=0o755)
        os.chmod(directory, 0o755)
        ledger = ConsentLedger(directory / "consent.db")
        ledger.record_consent(scope="view", terms_version="pomoc-zdalna-v1", terms_sha256="a" * 64,
                              session_start=time.time())
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}
        ledger.close()
    finally:
        os.umask(old)
    assert {"consent.db", "consent.db-wal", "consent.db-shm"} <= set(files), files
    assert all(mode == 0o600 for mode in files.values()), {k: oct(v) for k, v in files.items()}
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory owned by another user")
def test_another_user_cannot_squat_the_control_directory(tmp_path, monkeypatch):
    # The attacker (uid 65534) creates the directory a naive agent would use under /tmp.
    squat = f"/tmp/rejnet-agent-{os.geteuid()}"
    made = not os.path.exists(squat)
    if made:
        os.mkdir(squat, 0o777)
        os.chown(squat, 65534, 65534)
    try:
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
        path = default_control_path()
        assert not path.startswith(squat) and path.startswith(str(tmp_path))

        async def main() -> None:
            from agent.control.server import ControlServer

            class Handler:
                async def handle(self, cmd, args):
                    return {"state": "waiting"}

            server = ControlServer(Handler())
            await server.start()
            try:
                assert stat.S_IMODE(os.stat(os.path.dirname(server.path)).st_mode) == 0o700
            finally:
                await server.close()

        asyncio.run(main())
    finally:
        if made:
            os.rmdir(squat)


def test_printable_removes_every_control_character():
    shown = printable(ESCAPES + "\x00\x9b2J")
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in shown), repr(shown)
    assert "evil" in shown
    assert len(printable("x" * 10_000)) <= 500




def test_a_hostile_relays_reason_reaches_the_terminal_without_escapes(tmp_path):
    """The viewer prints the relay's error reason: ESC, BEL and bidi overrides must not get through."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(2048)  # the viewer's hello
            conn.sendall(json.dumps({"status": "error", "reason": ESCAPES}).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pw = tmp_path / "pw"
    pw.write_text("abc123\n")
    try:
        result = subprocess.run([PY, "-m", "agent.commands.viewer", "123456789", "--relay", f"127.0.0.1:{port}",
                                 "--password-file", str(pw)], capture_output=True, text=True, timeout=30,
                                env={k: v for k, v in os.environ.items() if k != "REJNET_PASSWORD"})
    finally:
        thread.join(5)
        listener.close()
    assert result.returncode != 0
    assert "evil" in result.stderr  # the reason was shown ...
    for bad in ("\x1b", "\x07", "\u202e"):  # ... without anything a terminal would act on
        assert bad not in result.stderr, repr(result.stderr)
    assert "Traceback" not in result.stderr


def test_the_exec_viewer_does_not_inherit_the_session_password(monkeypatch):
    from agent.commands import viewer

    monkeypatch.setenv("REJNET_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("REJNET_KEEP_ME", "1")
    env = viewer._child_environment()
    assert "REJNET_PASSWORD" not in env and env["REJNET_KEEP_ME"] == "1"
    assert "s3cret-pw" not in "".join(env.values())
