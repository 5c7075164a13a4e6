"""ConsentLedger: the hash chain, tamper detection, purge, durability settings, schema, failures."""
from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import subprocess
import threading

import pytest

from agent.consent.ledger import (
    COLUMNS,
    GENESIS,
    ConsentLedger,
    LedgerError,
    default_ledger_path,
    retention_cutoff,
    row_hash,
)
from agent.consent.terms import CURRENT_VERSION, is_packaged, known_versions, load_terms

SHA = load_terms().sha256
YEAR = 365.25 * 86400
NOW = 1_900_000_000.0  # 2030-03-17


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "ledger" / "consent.db")


@pytest.fixture
def ledger(db_path):
    with ConsentLedger(db_path) as opened:
        yield opened


def session(ledger: ConsentLedger, start: float, scope: str = "view") -> int:
    """A whole session: consent, a scope change, the end."""
    consent = ledger.record_consent(scope=scope, terms_version=CURRENT_VERSION, terms_sha256=SHA,
                                    session_start=start, now=start + 5)
    ledger.record_scope(consent, "control" if scope == "view" else "view", now=start + 60)
    ledger.record_end(consent, session_end=start + 600)
    return consent


def raw(path: str) -> sqlite3.Connection:
    """What a tamperer would do: open the file directly and drop the append-only triggers."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER IF EXISTS ledger_append_only")
    db.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
    return db


def test_chain_verifies_and_rows_hold_what_they_should(ledger):
    first = session(ledger, NOW)
    second = session(ledger, NOW + 3600, scope="control")
    result = ledger.verify()
    assert (result.ok, result.rows, result.first_bad) == (True, 6, None)
    rows = ledger.rows()
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["kind"] for row in rows] == ["consent", "scope", "end"] * 2
    assert rows[0]["prev_hash"] == GENESIS
    assert all(rows[i]["prev_hash"] == rows[i - 1]["hash"] for i in range(1, 6))
    expected = {"kind": "consent", "scope": "view", "terms_version": CURRENT_VERSION, "terms_sha256": SHA,
                "session_start": NOW, "at": NOW + 5, "consent_id": None, "session_end": None}
    assert {key: rows[0][key] for key in expected} == expected
    assert (rows[1]["consent_id"], rows[1]["scope"]) == (first, "control")
    assert (rows[5]["consent_id"], rows[5]["session_end"]) == (second, NOW + 3600 + 600)
    assert all(row["hash"] == row_hash(row["prev_hash"], row) for row in rows)


def test_record_end_twice_returns_the_first_end(ledger):
    consent = ledger.record_consent(scope="view", terms_version=CURRENT_VERSION, terms_sha256=SHA,
                                    session_start=NOW, now=NOW)
    end = ledger.record_end(consent, NOW + 10)
    assert ledger.record_end(consent, NOW + 20) == end
    assert len(ledger.rows()) == 2


@pytest.mark.parametrize("call", [
    lambda led: led.record_consent(scope="admin", terms_version="v1", terms_sha256=SHA, session_start=NOW),
    lambda led: led.record_consent(scope="view", terms_version="v1", terms_sha256="AB" * 32, session_start=NOW),
    lambda led: led.record_consent(scope="view", terms_version="10.0.0.1", terms_sha256=SHA, session_start=NOW),
    lambda led: led.record_consent(scope="view", terms_version="v1", terms_sha256=SHA, session_start=float("nan")),
    lambda led: led.record_scope(1, "view"),  # no such consent
    lambda led: led.record_end(99),
])
def test_invalid_records_are_refused(ledger, call):
    with pytest.raises(ValueError):
        call(ledger)
    assert ledger.rows() == []


def test_the_ledger_itself_refuses_update_and_delete(ledger, db_path):
    session(ledger, NOW)
    db = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE ledger SET scope = 'control' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM ledger WHERE id = 1")
    db.close()
    assert ledger.verify().ok


@pytest.mark.parametrize("sql, first_bad", [
    ("UPDATE ledger SET scope = 'control' WHERE id = 4", 4),
    ("UPDATE ledger SET at = at - 86400 WHERE id = 2", 2),
    ("UPDATE ledger SET terms_sha256 = '" + "0" * 64 + "' WHERE id = 1", 1),
    ("UPDATE ledger SET prev_hash = '" + "1" * 64 + "' WHERE id = 5", 5),
])
def test_an_edited_row_is_named(ledger, db_path, sql, first_bad):
    session(ledger, NOW)
    session(ledger, NOW + 3600)
    with raw(db_path) as db:
        db.execute(sql)
    result = ledger.verify()
    assert (result.ok, result.first_bad) == (False, first_bad)
    assert str(first_bad) in result.reason


def test_an_edit_with_a_recomputed_hash_is_caught_at_the_next_row(ledger, db_path):
    session(ledger, NOW)
    row = ledger.rows()[1]
    row["scope"] = "view"
    with raw(db_path) as db:
        db.execute("UPDATE ledger SET scope = 'view', hash = ? WHERE id = 2", (row_hash(row["prev_hash"], row),))
    assert ledger.verify().first_bad == 3


@pytest.mark.parametrize("deleted", [1, 3, 6])
def test_a_deleted_row_is_named(ledger, db_path, deleted):
    session(ledger, NOW)
    session(ledger, NOW + 3600)
    with raw(db_path) as db:
        db.execute("DELETE FROM ledger WHERE id = ?", (deleted,))
    result = ledger.verify()
    assert (result.ok, result.first_bad) == (False, deleted)
    assert "deleted" in result.reason


def test_inserted_rows_are_named(ledger, db_path):
    session(ledger, NOW)
    rows = ledger.rows()
    forged = {name: None for name in COLUMNS}
    forged.update(kind="consent", at=NOW - 10, scope="control", terms_version=CURRENT_VERSION, terms_sha256=SHA,
                  session_start=NOW - 20)
    with raw(db_path) as db:
        # at the end, with a correct link and hash: only the ledger's own head shows it
        forged.update(id=4, prev_hash=rows[-1]["hash"])
        forged["hash"] = row_hash(forged["prev_hash"], forged)
        db.execute(f"INSERT INTO ledger VALUES ({', '.join('?' * len(COLUMNS))})", [forged[c] for c in COLUMNS])
    result = ledger.verify()
    assert (result.ok, result.first_bad) == (False, 4) and "inserted" in result.reason

    with raw(db_path) as db:
        db.execute("DELETE FROM ledger WHERE id = 4")
        # before the first row
        forged.update(id=0, prev_hash=GENESIS)
        forged["hash"] = row_hash(GENESIS, forged)
        db.execute(f"INSERT INTO ledger VALUES ({', '.join('?' * len(COLUMNS))})", [forged[c] for c in COLUMNS])
    result = ledger.verify()
    assert (result.ok, result.first_bad) == (False, 0) and "inserted" in result.reason


def test_a_replaced_last_row_is_named(ledger, db_path):
    session(ledger, NOW)
    last = ledger.rows()[-1]
    last["session_end"] = last["at"] = NOW + 99999
    with raw(db_path) as db:
        db.execute("DELETE FROM ledger WHERE id = 3")
        db.execute(f"INSERT INTO ledger VALUES ({', '.join('?' * len(COLUMNS))})",
                   [last[c] if c != "hash" else row_hash(last["prev_hash"], last) for c in COLUMNS])
    assert ledger.verify().first_bad == 3


def test_export_writes_json_lines(ledger):
    session(ledger, NOW)
    out = io.StringIO()
    assert ledger.export(out) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["kind"] for row in rows] == ["consent", "scope", "end"]
    assert set(rows[0]) == set(COLUMNS)
    assert rows == ledger.rows()


def test_purge_removes_old_rows_keeps_the_chain_and_records_itself(ledger):
    for n in range(3):
        session(ledger, NOW - 12 * YEAR + n * 3600)  # three sessions twelve years ago
    session(ledger, NOW - 2 * YEAR)
    assert ledger.purge(now=NOW) == 9
    rows = ledger.rows()
    assert [row["kind"] for row in rows] == ["consent", "scope", "end", "purge"]
    purge = rows[-1]
    assert (purge["purged_count"], purge["purged_through"], purge["at"]) == (9, 9, NOW)
    assert rows[0]["prev_hash"] == purge["anchor"]
    assert ledger.verify().ok

    # the chain goes on after the purge, and a later purge can remove the purge row itself
    session(ledger, NOW + 1000)
    assert ledger.verify().ok
    assert ledger.purge(now=NOW + 11 * YEAR) == 7
    rows = ledger.rows()
    assert [row["kind"] for row in rows] == ["purge"]
    assert (rows[0]["purged_count"], rows[0]["purged_through"]) == (7, 16)
    result = ledger.verify()
    assert (result.ok, result.rows) == (True, 1)


def test_purge_with_nothing_old_changes_nothing(ledger):
    session(ledger, NOW - 9 * YEAR)
    assert ledger.purge(now=NOW) == 0
    assert len(ledger.rows()) == 3


def test_purge_keeps_a_row_exactly_at_the_boundary(ledger):
    cutoff = retention_cutoff(NOW)
    ledger.record_consent(scope="view", terms_version=CURRENT_VERSION, terms_sha256=SHA, session_start=cutoff - 1,
                          now=cutoff - 1)
    ledger.record_consent(scope="view", terms_version=CURRENT_VERSION, terms_sha256=SHA, session_start=cutoff,
                          now=cutoff)
    assert ledger.purge(now=NOW) == 1
    assert [row["at"] for row in ledger.rows()] == [cutoff, NOW]


def test_an_edited_purge_row_is_named(ledger, db_path):
    session(ledger, NOW - 12 * YEAR)
    session(ledger, NOW)
    ledger.purge(now=NOW)
    with raw(db_path) as db:
        db.execute("UPDATE ledger SET purged_through = 2 WHERE kind = 'purge'")
    assert ledger.verify().first_bad == 7


def test_rows_before_the_purge_anchor_cannot_be_dropped_silently(ledger, db_path):
    session(ledger, NOW - 12 * YEAR)
    session(ledger, NOW)
    ledger.purge(now=NOW)
    with raw(db_path) as db:
        db.execute("DELETE FROM ledger WHERE id = 4")  # the first row after the anchor
    assert ledger.verify().first_bad == 4


def test_retention_cutoff_is_in_calendar_years():
    import datetime as dt
    leap = dt.datetime(2028, 2, 29, 12, tzinfo=dt.timezone.utc).timestamp()
    assert retention_cutoff(leap) == dt.datetime(2018, 2, 28, 12, tzinfo=dt.timezone.utc).timestamp()
    plain = dt.datetime(2030, 6, 1, tzinfo=dt.timezone.utc).timestamp()
    assert retention_cutoff(plain) == dt.datetime(2020, 6, 1, tzinfo=dt.timezone.utc).timestamp()


def test_wal_and_synchronous_full(ledger, db_path):
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with sqlite3.connect(db_path) as other:  # WAL is a property of the file
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_has_no_place_for_addresses_ids_or_passwords(ledger, db_path):
    with sqlite3.connect(db_path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"ledger", "head"}
        columns = {table: [(row[1], row[2]) for row in db.execute(f"PRAGMA table_info({table})")]
                   for table in tables}
    assert [name for name, _ in columns["ledger"]] == list(COLUMNS)
    for name, _ in columns["ledger"] + columns["head"]:
        assert not any(word in name for word in ("ip", "mac", "addr", "host", "session_id", "password", "token",
                                                 "secret", "user", "name"))
    text_columns = [name for name, kind in columns["ledger"] if kind == "TEXT"]
    assert text_columns == ["kind", "scope", "terms_version", "terms_sha256", "anchor", "prev_hash", "hash"]
    # every text column refuses an IP address, a session ID and a password-looking string
    with raw(db_path) as db:
        for column in text_columns:
            for value in ("192.168.1.20", "123456789", "Hunter2!"):
                with pytest.raises(sqlite3.IntegrityError):
                    db.execute(f"INSERT INTO ledger (kind, at, prev_hash, hash, {column}) VALUES "
                               f"('consent', 1.0, '{GENESIS}', '{GENESIS}', ?)", (value,))
        for column in ("at", "session_start", "session_end"):  # STRICT: numbers only
            with pytest.raises(sqlite3.IntegrityError):
                db.execute(f"INSERT INTO ledger (kind, at, prev_hash, hash, {column}) VALUES "
                           f"('end', 1.0, '{GENESIS}', '{GENESIS}', '10.0.0.1')")


def test_file_and_directory_are_private(ledger, db_path):
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(db_path)).st_mode) == 0o700


def test_reopening_keeps_the_rows_and_two_ledgers_share_one_chain(db_path):
    with ConsentLedger(db_path) as first, ConsentLedger(db_path) as second:
        session(first, NOW)
        session(second, NOW + 60)
        session(first, NOW + 120)
    with ConsentLedger(db_path) as again:
        result = again.verify()
    assert (result.ok, result.rows) == (True, 9)


def test_threads_share_a_ledger(ledger):
    def work(n: int) -> None:
        for i in range(5):
            session(ledger, NOW + n * 1000 + i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    result = ledger.verify()
    assert (result.ok, result.rows) == (True, 60)


def test_read_only_ledger_verifies_but_refuses_writes(ledger, db_path):
    session(ledger, NOW)
    with ConsentLedger(db_path, read_only=True) as reader:
        assert reader.verify().ok
        with pytest.raises(LedgerError, match="read-only"):
            reader.record_consent(scope="view", terms_version="v1", terms_sha256=SHA, session_start=NOW)


def test_default_ledger_path(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_ledger_path() == str(tmp_path / "rejnet-agent" / "consent.db")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", "/home/ola")
    assert default_ledger_path() == "/home/ola/.local/share/rejnet-agent/consent.db"


# --- a ledger that cannot be written -----------------------------------------

def test_path_under_a_file(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(LedgerError, match="is not a directory"):
        ConsentLedger(tmp_path / "plain" / "consent.db")


def test_corrupt_file(tmp_path):
    path = tmp_path / "consent.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="damaged or not a consent ledger"):
        ConsentLedger(path)


def test_another_database_is_not_taken_over(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(LedgerError, match="not a consent ledger"):
        ConsentLedger(path)
    with sqlite3.connect(path) as db:
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_missing_ledger_read_only(tmp_path):
    with pytest.raises(LedgerError, match="no consent ledger at"):
        ConsentLedger(tmp_path / "nope.db", read_only=True)


def test_locked_ledger(db_path):
    ledger = ConsentLedger(db_path, busy_timeout=0.1)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerError, match="locked by another process"):
            ledger.record_consent(scope="view", terms_version="v1", terms_sha256=SHA, session_start=NOW)
        with pytest.raises(LedgerError, match="locked"):
            ConsentLedger(db_path, busy_timeout=0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ledger.record_consent(scope="view", terms_version="v1", terms_sha256=SHA, session_start=NOW)
    assert ledger.verify().rows == 1
    ledger.close()


def test_immutable_file_is_read_only(ledger, db_path):
    session(ledger, NOW)
    ledger.close()
    if subprocess.run(["chattr", "+i", db_path], capture_output=True).returncode != 0:
        pytest.skip("cannot set the immutable flag here (needs root and a file system with chattr)")
    try:
        with pytest.raises(LedgerError, match="read-only"):
            ConsentLedger(db_path)
    finally:
        subprocess.run(["chattr", "-i", db_path], check=True)


def test_terms():
    assert CURRENT_VERSION in known_versions()
    terms = load_terms()
    assert terms.text.startswith("POMOC ZDALNA")
    assert is_packaged(CURRENT_VERSION, terms.sha256.upper())
    assert not is_packaged(CURRENT_VERSION, "0" * 64)
    assert not is_packaged("../errors", "0" * 64)
