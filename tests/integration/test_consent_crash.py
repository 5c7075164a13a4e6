"""Consent is on disk before the agent says so, and refused when it cannot be written.

The crash test runs this file as a child process: a ControlServer whose
handler records consent in a ConsentLedger (committed before the reply). The
child is killed with SIGKILL right after the ok reply; the row must be there.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

import pytest

from agent.consent.ledger import ConsentLedger, LedgerError
from agent.consent.terms import CURRENT_VERSION, load_terms
from agent.control.client import AsyncControlClient
from agent.control.protocol import ControlError
from agent.control.server import ControlServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHA = load_terms().sha256
CONSENT = {"cmd": "consent", "scope": "control", "terms_version": CURRENT_VERSION, "terms_sha256": SHA}


class ConsentHandler:
    """The consent path of a session: record first, then say ok; refuse when the ledger fails."""

    def __init__(self, ledger: ConsentLedger) -> None:
        self.ledger = ledger
        self.session_start = time.time()

    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        if cmd != "consent":
            raise ControlError("bad_state", f"{cmd} is not available in this test agent")
        try:
            consent_id = await asyncio.to_thread(
                self.ledger.record_consent, scope=args["scope"], terms_version=args["terms_version"],
                terms_sha256=args["terms_sha256"], session_start=self.session_start)
        except LedgerError as exc:
            raise ControlError("ledger_unavailable", f"consent not recorded: {exc}") from None
        return {"consent_id": consent_id}


async def _child(sock_path: str, db_path: str) -> None:
    ledger = ConsentLedger(db_path)
    server = ControlServer(ConsentHandler(ledger), sock_path)
    await server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until killed



@pytest.fixture
def workdir() -> Iterator[str]:
    base = tempfile.mkdtemp(prefix="rjcrash-")  # short: socket paths must stay under 108 bytes
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _start_child(sock_path: str, db_path: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), sock_path, db_path], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready or proc.stdout.readline() != b"ready\n":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the test agent did not start: {err.decode(errors='replace')}")
    return proc


def test_consent_survives_kill_9_right_after_the_ok(workdir):
    sock_path = os.path.join(workdir, "run", "control.sock")
    db_path = os.path.join(workdir, "data", "consent.db")
    recorded = []
    for round_ in range(2):  # the second agent also replaces the stale socket the first one left
        proc = _start_child(sock_path, db_path)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(20)
                conn.connect(sock_path)
                conn.sendall(json.dumps({"id": round_, **CONSENT}).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    assert chunk, "the agent closed without replying"
                    data += chunk
                os.kill(proc.pid, signal.SIGKILL)  # the moment the ok is in: no chance to flush anything
            reply = json.loads(data)
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        assert reply["ok"] is True, reply
        recorded.append(reply["consent_id"])
        assert os.path.exists(sock_path)  # left behind by the killed agent

    with ConsentLedger(db_path, read_only=True) as ledger:
        rows = ledger.rows()
        result = ledger.verify()
    assert [row["id"] for row in rows] == recorded == [1, 2]
    assert all((row["kind"], row["scope"], row["terms_sha256"]) == ("consent", "control", SHA) for row in rows)
    assert (result.ok, result.rows) == (True, 2)


async def _ask_consent(sock_path: str, handler: ConsentHandler) -> dict[str, Any]:
    server = ControlServer(handler, sock_path)
    await server.start()
    try:
        client = await AsyncControlClient.open(sock_path, timeout=20)
        try:
            args = {key: value for key, value in CONSENT.items() if key != "cmd"}
            return await client.request("consent", check=False, **args)
        finally:
            await client.close()
    finally:
        await server.close()


def test_locked_ledger_refuses_consent(workdir):
    import sqlite3
    db_path = os.path.join(workdir, "consent.db")
    ledger = ConsentLedger(db_path, busy_timeout=0.1)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        reply = asyncio.run(_ask_consent(os.path.join(workdir, "run", "c.sock"), ConsentHandler(ledger)))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert reply["ok"] is False
    assert reply["error"]["code"] == "ledger_unavailable"
    assert "locked" in reply["error"]["message"]
    assert ledger.rows() == []
    ledger.close()


@contextlib.contextmanager
def _small_tmpfs(where: str) -> Iterator[str]:
    os.mkdir(where)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", where],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root with CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", where], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", where], capture_output=True)


def test_full_disk_refuses_consent(workdir):
    with _small_tmpfs(os.path.join(workdir, "small")) as small:
        db_path = os.path.join(small, "consent.db")
        ledger = ConsentLedger(db_path)
        try:
            with open(os.path.join(small, "filler"), "wb", buffering=0) as filler:
                with pytest.raises(OSError):
                    for _ in range(1000):
                        filler.write(b"\0" * 4096)
            reply = asyncio.run(_ask_consent(os.path.join(workdir, "run", "c.sock"), ConsentHandler(ledger)))
            assert reply["ok"] is False
            assert reply["error"]["code"] == "ledger_unavailable"
            assert "no space left" in reply["error"]["message"]
            os.unlink(os.path.join(small, "filler"))
            assert ledger.rows() == []
            assert ledger.verify().ok
        finally:
            ledger.close()


if __name__ == "__main__":  # the child process of the crash test; PYTHONPATH reaches the checkout
    asyncio.run(_child(sys.argv[1], sys.argv[2]))
