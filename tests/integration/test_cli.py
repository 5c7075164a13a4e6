"""The commands as a person meets them: --help, exit codes, one-line errors, the demo."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PY = sys.executable


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("REJNET_RELAY", None)
    full_env.update(env or {})
    return subprocess.run([PY, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command, words", [
    (["-m", "agent", "--help"], ["--relay", "--listen", "--display", "--screen", "--control", "--consent-db",
                                 "--confirm-each", "--churn-fps", "--json", "ctl", "rfb", "demo", "consent-log",
                                 "Exit codes"]),
    (["-m", "agent", "ctl", "--help"], ["status", "credentials", "consent", "accept", "reject", "set-scope",
                                        "terminate", "events", "--json"]),
    (["-m", "agent", "consent-log", "--help"], ["verify", "export", "purge"]),
    (["-m", "agent", "rfb", "--help"], ["--listen", "--view-only", "--no-auth", "--password-file", "--churn-fps"]),
    (["-m", "agent", "demo", "--help"], ["--seconds", "--out"]),
    (["-m", "agent", "probe", "--help"], ["--seconds"]),
    (["-m", "agent.commands.viewer", "--help"], ["SESSION_ID", "--relay", "--direct", "--listen", "--password-file",
                                        "--exec", "--json"]),
    (["-m", "agent.commands.relay", "--help"], ["--listen"]),
])
def test_help(command, words):
    result = run(*command)
    assert result.returncode == 0, result.stderr
    for word in words:
        assert word in result.stdout, f"{word!r} missing from {' '.join(command)}"


@pytest.mark.parametrize("value, words", [("x", "not a number"), ("-1", "from 0 to 120"), ("500", "from 0 to 120")])
def test_a_bad_churn_fps_is_a_usage_error(value, words, tmp_path):
    for command in (["-m", "agent", "--relay", "127.0.0.1:9", "--consent-db", str(tmp_path / "c.db")],
                    ["-m", "agent", "rfb", "--no-auth"]):
        result = run(*command, "--churn-fps", value, "--screen", "synthetic:idle")
        assert result.returncode == 2, result.stderr
        assert "--churn-fps" in result.stderr and words in result.stderr and "Traceback" not in result.stderr


def test_session_without_a_relay_is_a_usage_error(tmp_path):
    result = run("-m", "agent", "--screen", "synthetic:idle", "--consent-db", str(tmp_path / "c.db"))
    assert result.returncode == 2
    assert "relay" in result.stderr and "Traceback" not in result.stderr


def test_session_on_a_missing_display_exits_5(tmp_path):
    result = run("-m", "agent", "--relay", "127.0.0.1:9", "--display", ":987", "--consent-db", str(tmp_path / "c.db"),
                 "--control", str(tmp_path / "ctl" / "control.sock"))
    assert result.returncode == 5, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_viewer_without_password_is_a_usage_error():
    result = run("-m", "agent.commands.viewer", "123 456 789", "--relay", "127.0.0.1:9")
    assert result.returncode == 2
    assert "password" in result.stderr and "Traceback" not in result.stderr


def test_viewer_refuses_non_loopback_listen(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("abcdef\n")
    result = run("-m", "agent.commands.viewer", "123456789", "--relay", "127.0.0.1:9", "--listen", "0.0.0.0:5901",
                 "--password-file", str(pw))
    assert result.returncode == 2 and "loopback" in result.stderr


def test_viewer_unknown_session_is_a_clear_error(tmp_path):
    from tests.support.processes import free_port

    port = free_port()
    relay = subprocess.Popen([PY, "-m", "agent.commands.relay", "--listen", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pw = tmp_path / "pw"
        pw.write_text("abcdef\n")
        import socket
        import time

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        result = run("-m", "agent.commands.viewer", "111 222 333", "--relay", f"127.0.0.1:{port}", "--password-file", str(pw))
        assert result.returncode != 0
        assert "session" in result.stderr.lower() and "Traceback" not in result.stderr
    finally:
        relay.terminate()
        relay.wait(5)


def test_demo_runs_on_a_synthetic_screen(tmp_path):
    out = tmp_path / "out"
    result = run("-m", "agent", "demo", "--seconds", "2", "--screen", "synthetic:mixed:320x200", "--out", str(out),
                 "--json", timeout=180)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = [line for line in lines if line.get("event") == "summary"][0]
    assert summary["updates"] > 0 and summary["bytes_received"] > 0
    assert 0 < summary["link_bytes_sent"] < summary["bytes_received"]  # the channel compressed the RFB stream
    assert len(summary["safety_code"]) == 4
    # the latency the technician feels, not the time a pull request waits for the next change
    assert 0 <= summary["change_to_update_ms_p50"] <= summary["change_to_update_ms_p95"] < 5000
    assert "request_to_update_ms_p50" in summary
    (status,) = [line for line in lines if line.get("event") == "status"][:1] or [None]
    assert status is None or "change_to_update_ms" in status
    assert (out / "technician.png").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["width"] == 320
    messages = " ".join(line.get("message", "") for line in lines)
    assert "session ID" in messages and "safety code" in messages


def test_readme_test_command_is_what_ci_runs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert "ci-test-command" in readme and "ci-test-command" in ci
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0].strip()
    assert "rejnet-agent demo" in first_block and "pip install" in first_block
    # The command .ci/run extracts (by its own awk line, run here) is the README's second block, verbatim.
    test_cmd_line = next(line for line in ci.splitlines() if line.startswith("test_cmd=$("))
    extracted = subprocess.run(["bash", "-c", test_cmd_line + '\nprintf %s "$test_cmd"'], cwd=root,
                               capture_output=True, text=True, timeout=30, check=True).stdout
    marked_block = readme.split("<!-- ci-test-command", 1)[1].split("```sh", 1)[1].split("```", 1)[0].strip()
    assert extracted == marked_block
    assert extracted.startswith("python3 -m venv .venv && .venv/bin/pip install") and "-m pytest" in extracted
