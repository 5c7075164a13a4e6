"""``rejnet-agent`` (the session command) failing to start: a sentence on stderr and, with --json, an event."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_RUNTIME_DIR=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "agent", "--relay", f"127.0.0.1:{_closed_port()}",
                           "--screen", "synthetic:typing", "--consent-db", str(tmp_path / "c.db"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_a_failed_start_is_an_error_event_with_json_and_a_sentence_without(tmp_path: Path) -> None:
    done = _agent(tmp_path, "--json")
    assert done.returncode == 1
    [event] = [json.loads(line) for line in done.stdout.splitlines()]
    assert event["event"] == "error" and event["exit_code"] == 1
    assert event["message"].startswith("cannot reach the relay at 127.0.0.1:")
    assert "Traceback" not in done.stderr and done.stderr.startswith("error: cannot reach the relay")
    plain = _agent(tmp_path)
    assert plain.returncode == 1 and plain.stdout == "" and plain.stderr.startswith("error: cannot reach the relay")
