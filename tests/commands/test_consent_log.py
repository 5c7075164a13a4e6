"""``rejnet-agent consent-log verify | export | purge``."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from agent.commands import agent_main
from agent.consent.ledger import ConsentLedger
from agent.consent.terms import CURRENT_VERSION, load_terms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHA = load_terms().sha256
YEAR = 365.25 * 86400


@pytest.fixture
def db_path(tmp_path):
    path = str(tmp_path / "consent.db")
    now = time.time()
    with ConsentLedger(path) as ledger:
        for start in (now - 11 * YEAR, now - 11 * YEAR + 60, now - 3600):
            consent = ledger.record_consent(scope="view", terms_version=CURRENT_VERSION, terms_sha256=SHA,
                                            session_start=start, now=start + 1)
            ledger.record_end(consent, start + 300)
    return path


def log(*argv: str) -> int:
    return agent_main(["consent-log", *argv])


def test_verify_ok(db_path, capsys):
    assert log("--consent-db", db_path, "verify") == 0
    assert capsys.readouterr().out.strip() == "ok: 6 rows, chain intact"


def test_verify_names_the_edited_row(db_path, capsys):
    with sqlite3.connect(db_path) as db:
        db.execute("DROP TRIGGER ledger_append_only")
        db.execute("UPDATE ledger SET scope = 'control' WHERE id = 3")
    assert log("--consent-db", db_path, "verify") == 1
    assert capsys.readouterr().out.startswith("BROKEN at row 3: row 3 was edited")
    assert log("verify", "--consent-db", db_path, "--json") == 1  # options after the command too
    assert json.loads(capsys.readouterr().out) == {
        "ok": False, "rows": 6, "first_bad": 3, "reason": "row 3 was edited: its content does not match its hash"}


def test_export_to_stdout(db_path, capsys):
    assert log("--consent-db", db_path, "export") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["kind"] for row in rows] == ["consent", "end"] * 3
    assert all(row["terms_sha256"] == SHA for row in rows[::2])


def test_export_to_a_file(db_path, tmp_path, capsys):
    out = tmp_path / "export.jsonl"
    assert log("--consent-db", db_path, "export", "--out", str(out)) == 0
    assert capsys.readouterr().out.strip() == f"exported 6 rows to {out}"
    assert len(out.read_text().splitlines()) == 6


def test_export_to_an_unwritable_place(db_path, tmp_path, capsys):
    assert log("--consent-db", db_path, "export", "--out", str(tmp_path / "no" / "such" / "dir.jsonl")) == 1
    assert "cannot write the export" in capsys.readouterr().err


def test_purge_prints_the_count_and_records_itself(db_path, capsys):
    assert log("--consent-db", db_path, "purge") == 0
    assert capsys.readouterr().out.strip() == "purged 4 rows older than 10 years"
    assert log("--consent-db", db_path, "--json", "purge") == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 0}
    with ConsentLedger(db_path, read_only=True) as ledger:
        rows = ledger.rows()
        assert [row["kind"] for row in rows] == ["consent", "end", "purge"]
        assert rows[-1]["purged_count"] == 4
        assert ledger.verify().ok


def test_missing_ledger(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    assert log("--consent-db", str(missing), "verify") == 1
    assert capsys.readouterr().err.strip() == f"error: no consent ledger at {missing}"
    assert not missing.exists()  # verify never creates one


def test_default_path_from_xdg_data_home(db_path, tmp_path, monkeypatch, capsys):
    home = tmp_path / "data"
    (home / "rejnet-agent").mkdir(parents=True)
    os.replace(db_path, home / "rejnet-agent" / "consent.db")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.replace(db_path + suffix, str(home / "rejnet-agent" / "consent.db") + suffix)
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    assert log("verify") == 0
    assert capsys.readouterr().out.startswith("ok: 6 rows")


def test_usage(capsys):
    with pytest.raises(SystemExit) as exited:
        log("shred")
    assert exited.value.code == 2


def test_from_a_shell_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "agent", "consent-log", "--consent-db", str(tmp_path / "x.db"),
                           "export"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no consent ledger at") and len(proc.stderr.splitlines()) == 1
