"""The consent ledger (DESIGN §5): proof, kept 10 years, that the customer agreed.

SQLite in WAL mode with ``synchronous=FULL``, so a row is on disk before the
call that writes it returns (the session replies "consent recorded" only
after that). Rows are append-only typed events:

* ``consent``: consent time (``at``), scope, terms version and SHA-256,
  session start;
* ``scope``: a scope change of a consented session (``consent_id``);
* ``end``: the session's end time (``session_end``, ``consent_id``);
* ``purge``: how many rows older than the retention period were removed,
  the id of the last one (``purged_through``) and its hash (``anchor``).

There is deliberately no column for an IP or MAC address, a session ID or a
password, and the text columns are constrained to what they hold.

Tamper evidence: each row's ``hash`` is SHA-256 over the previous row's hash
and this row's canonical content (``row_hash``). The chain starts at
``GENESIS``, or after a purge at the latest purge row's ``anchor``; ids are
consecutive; the ``head`` table holds the last id and hash, so cutting rows
off the end shows too. Someone who can rewrite the whole file can forge a new
chain: the ledger detects edits, not a determined owner of the disk.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import re
import sqlite3
import stat
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterator, TextIO

from agent.consent.terms import VERSION_MAX, is_version_name
from agent.errors import RejnetError

SCHEMA_VERSION = 1
RETENTION_YEARS = 10
GENESIS = "0" * 64
SCOPES = ("view", "control")
BUSY_TIMEOUT = 2.0  # seconds to wait for another process's write lock

_HEX64 = "length({c}) = 64 AND {c} NOT GLOB '*[^0-9a-f]*'"
_SCHEMA = (
    f"""CREATE TABLE ledger (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('consent', 'scope', 'end', 'purge')),
    at REAL NOT NULL,
    consent_id INTEGER,
    scope TEXT CHECK (scope IN ('view', 'control')),
    terms_version TEXT CHECK (length(terms_version) <= {VERSION_MAX} AND terms_version GLOB '[a-z]*'
                              AND terms_version NOT GLOB '*[^a-z0-9.-]*'),
    terms_sha256 TEXT CHECK ({_HEX64.format(c="terms_sha256")}),
    session_start REAL,
    session_end REAL,
    purged_count INTEGER,
    purged_through INTEGER,
    anchor TEXT CHECK ({_HEX64.format(c="anchor")}),
    prev_hash TEXT NOT NULL CHECK ({_HEX64.format(c="prev_hash")}),
    hash TEXT NOT NULL CHECK ({_HEX64.format(c="hash")}),
    CHECK (kind != 'consent' OR (scope IS NOT NULL AND terms_version IS NOT NULL
                                 AND terms_sha256 IS NOT NULL AND session_start IS NOT NULL)),
    CHECK (kind NOT IN ('scope', 'end') OR consent_id IS NOT NULL),
    CHECK (kind != 'scope' OR scope IS NOT NULL),
    CHECK (kind != 'end' OR session_end IS NOT NULL),
    CHECK (kind != 'purge' OR (purged_count > 0 AND purged_through IS NOT NULL AND anchor IS NOT NULL))
) STRICT""",
    f"""CREATE TABLE head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    last_id INTEGER NOT NULL,
    last_hash TEXT NOT NULL CHECK ({_HEX64.format(c="last_hash")})
) STRICT""",
    f"INSERT INTO head (one, last_id, last_hash) VALUES (1, 0, '{GENESIS}')",
    """CREATE TRIGGER ledger_append_only BEFORE UPDATE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only'); END""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_NO_DELETE = """CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the consent ledger is append-only; only purge removes rows'); END"""

FIELDS = ("id", "kind", "at", "consent_id", "scope", "terms_version", "terms_sha256", "session_start",
          "session_end", "purged_count", "purged_through", "anchor")
"""The content a row's hash covers, in addition to the previous hash."""
COLUMNS = FIELDS + ("prev_hash", "hash")

_SHA256 = re.compile(r"[0-9a-f]{64}")


class LedgerError(RejnetError):
    """The consent ledger cannot be opened or written (read-only, disk full, locked or damaged).

    The message names the file and what to do. The session must not proceed
    without a recorded consent, so callers refuse consent when they see this.
    """


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    first_bad: int | None  # id of the first edited, inserted or deleted row
    reason: str


def row_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 chaining ``row`` (its FIELDS) to the row before it; stable across Python versions."""
    content = json.dumps({name: row.get(name) for name in FIELDS}, sort_keys=True, separators=(",", ":"),
                         allow_nan=False)
    return hashlib.sha256(b"rejnet-consent-v1\n" + prev_hash.encode("ascii") + b"\n"
                          + content.encode("utf-8")).hexdigest()


def _private_dir(directory: str) -> None:
    """The ledger's directory is ours and closed to others: tightened to 0700 if it is ours, refused if not."""
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise LedgerError(f"the consent ledger's directory {directory} is a symlink or not a directory")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise LedgerError(f"the consent ledger's directory {directory} belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o077:
        os.chmod(directory, 0o700)


def _private_files(path: str) -> None:
    """The ledger and its -wal and -shm files are 0600: created so, and tightened if an older run left them wider.

    SQLite gives -wal and -shm the database file's permissions, so creating the
    database 0600 before SQLite opens it covers the files it makes later.
    """
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise LedgerError(f"cannot create consent ledger {path}: {exc.strerror}") from None
    for name in (path, path + "-wal", path + "-shm"):
        try:
            if stat.S_IMODE(os.lstat(name).st_mode) & 0o077:
                os.chmod(name, 0o600)
        except (FileNotFoundError, PermissionError):  # gone, or immutable: SQLite says what is wrong next
            pass


def default_ledger_path() -> str:
    """``$XDG_DATA_HOME/rejnet-agent/consent.db``, else ``~/.local/share/rejnet-agent/consent.db``."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):  # the XDG spec says to ignore a relative value
        data_home = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data_home, "rejnet-agent", "consent.db")


def retention_cutoff(now: float, years: int = RETENTION_YEARS) -> float:
    """The timestamp ``years`` calendar years before ``now`` (29 February maps to 28 February)."""
    moment = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    try:
        earlier = moment.replace(year=moment.year - years)
    except ValueError:
        earlier = moment.replace(year=moment.year - years, day=28)
    return earlier.timestamp()


def _time(value: float | None, name: str) -> float:
    value = time.time() if value is None else float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite timestamp")
    return value


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'view' or 'control', not {scope!r}")


def _check_row_id(value: Any) -> None:
    # hashed as JSON, so "5" and 5 would differ: only a real int may go in
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a row id must be an int, not {value!r}")


def _describe(path: str, exc: sqlite3.Error) -> str:
    """Turn an SQLite error into a sentence that says what is wrong and what to do."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return f"consent ledger {path} is locked by another process; retry once it has finished"
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return f"consent ledger {path} is read-only; make the file and its directory writable for this user"
    if name == "SQLITE_FULL" or "disk is full" in text:
        return f"no space left for consent ledger {path}; free some disk space and retry"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return f"cannot open consent ledger {path}; check the path (or pass --consent-db PATH)"
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "not a database" in text or "malformed" in text:
        return (f"consent ledger {path} is damaged or not a consent ledger; move it aside (keep it for audit) "
                "and start a new one")
    if isinstance(exc, sqlite3.IntegrityError):
        return f"consent ledger {path} holds rows this agent did not write; run 'rejnet-agent consent-log verify'"
    return f"consent ledger {path} failed: {exc}"


class ConsentLedger:
    """Append-only, hash-chained consent records in one SQLite file; safe to share between threads.

    ``read_only`` opens an existing ledger for verify and export only (an
    auditor's copy, a file we may not write); otherwise the ledger is opened
    or created and checked writable at once.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False,
                 busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.read_only = read_only
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            if read_only:
                if not os.path.exists(self.path):
                    raise LedgerError(f"no consent ledger at {self.path}")
                uri = "file:" + urllib.parse.quote(self.path) + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, timeout=busy_timeout, isolation_level=None,
                                           check_same_thread=False)
                self._check_format()
            else:
                self._open_writable(busy_timeout)
        except sqlite3.Error as exc:
            self.close()
            raise LedgerError(_describe(self.path, exc)) from None
        except BaseException:
            self.close()
            raise

    def _open_writable(self, busy_timeout: float) -> None:
        directory = os.path.dirname(self.path)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except FileExistsError:
            raise LedgerError(f"cannot create consent ledger {self.path}: {directory} is not a directory") from None
        except OSError as exc:
            raise LedgerError(f"cannot create the directory of consent ledger {self.path}: {exc.strerror}") from None
        _private_dir(directory)
        _private_files(self.path)
        self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise LedgerError(f"consent ledger {self.path} cannot use write-ahead logging (journal mode {mode}); "
                              "it must be on a local, writable file system")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # purged rows are overwritten, not just unlinked
        with self._transaction():  # BEGIN IMMEDIATE takes the write lock: proves we can write now
            if not self._tables():
                for statement in _SCHEMA + (_NO_DELETE,):
                    self._db.execute(statement)
            self._check_format()
            # a write that changes nothing: SQLite opens an unwritable file read-only and says so only here
            self._db.execute("UPDATE head SET last_id = last_id WHERE 0")
        _private_files(self.path)  # the -wal and -shm files SQLite has made by now

    def _tables(self) -> set[str]:
        assert self._db is not None
        return {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _check_format(self) -> None:
        assert self._db is not None
        if not {"ledger", "head"} <= self._tables():
            raise LedgerError(f"{self.path} is not a consent ledger; pass the right --consent-db PATH")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise LedgerError(f"consent ledger {self.path} has format {version}; this agent reads format "
                              f"{SCHEMA_VERSION}: use a matching rejnet-agent")

    def __enter__(self) -> ConsentLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- writing -------------------------------------------------------------

    def record_consent(self, *, scope: str, terms_version: str, terms_sha256: str, session_start: float,
                       now: float | None = None) -> int:
        """Append a consent row; it is committed and synced to disk when this returns its id."""
        _check_scope(scope)
        if not is_version_name(terms_version):
            raise ValueError(f"invalid terms version {terms_version!r}")
        if not _SHA256.fullmatch(terms_sha256):
            raise ValueError("terms_sha256 must be 64 lowercase hex digits")
        row = {"kind": "consent", "at": _time(now, "now"), "scope": scope, "terms_version": terms_version,
               "terms_sha256": terms_sha256, "session_start": _time(session_start, "session_start")}
        with self._writing() as db:
            return self._append(db, row)

    def record_scope(self, consent_id: int, scope: str, now: float | None = None) -> int:
        """Append a scope change of the session that ``consent_id`` opened."""
        _check_scope(scope)
        _check_row_id(consent_id)
        row = {"kind": "scope", "at": _time(now, "now"), "consent_id": consent_id, "scope": scope}
        with self._writing() as db:
            self._check_consent(db, consent_id)
            return self._append(db, row)

    def record_end(self, consent_id: int, session_end: float | None = None) -> int:
        """Append the session's end; a second call for the same session returns the first end row's id."""
        _check_row_id(consent_id)
        end = _time(session_end, "session_end")
        with self._writing() as db:
            self._check_consent(db, consent_id)
            found = db.execute("SELECT id FROM ledger WHERE kind = 'end' AND consent_id = ?",
                               (consent_id,)).fetchone()
            if found is not None:
                return int(found[0])
            return self._append(db, {"kind": "end", "at": end, "consent_id": consent_id, "session_end": end})

    def purge(self, now: float | None = None, max_age_years: int = RETENTION_YEARS) -> int:
        """Remove the rows older than ``max_age_years`` and record that in a purge row; returns how many.

        Only the oldest consecutive rows go (the chain must stay whole), so a
        row written while the clock was wrong can hold later rows back a while.
        """
        moment = _time(now, "now")
        cutoff = retention_cutoff(moment, max_age_years)
        with self._writing() as db:
            count, last_id, last_hash = 0, None, None
            for row_id, at, row_hash_ in db.execute("SELECT id, at, hash FROM ledger ORDER BY id"):
                if at >= cutoff:
                    break
                count, last_id, last_hash = count + 1, row_id, row_hash_
            if count == 0:
                return 0
            db.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
            db.execute("DELETE FROM ledger WHERE id <= ?", (last_id,))
            db.execute(_NO_DELETE)
            self._append(db, {"kind": "purge", "at": moment, "purged_count": count, "purged_through": last_id,
                              "anchor": last_hash})
        with self._lock, self._guard() as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the old rows leave the WAL file too
        return count

    def _check_consent(self, db: sqlite3.Connection, consent_id: int) -> None:
        found = db.execute("SELECT kind FROM ledger WHERE id = ?", (consent_id,)).fetchone()
        if found is None or found[0] != "consent":
            raise ValueError(f"row {consent_id} is not a consent in this ledger")

    def _append(self, db: sqlite3.Connection, fields: dict[str, Any]) -> int:
        last_id, prev_hash = db.execute("SELECT last_id, last_hash FROM head").fetchone()
        row = {name: None for name in FIELDS}
        row.update(fields, id=last_id + 1)
        row["prev_hash"] = prev_hash
        row["hash"] = row_hash(prev_hash, row)
        db.execute(f"INSERT INTO ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                   [row[name] for name in COLUMNS])
        db.execute("UPDATE head SET last_id = ?, last_hash = ?", (row["id"], row["hash"]))
        return int(row["id"])

    # --- reading -------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """Every row, oldest first, as a dict of COLUMNS (one consistent snapshot)."""
        with self._lock, self._guard() as db, self._transaction("BEGIN"):
            return self._rows(db)

    def export(self, out: TextIO) -> int:
        """Write every row as a JSON line to ``out``; returns how many."""
        rows = self.rows()
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
        return len(rows)

    def verify(self) -> VerifyResult:
        """Walk the chain; name the first row that was edited, inserted or deleted."""
        with self._lock, self._guard() as db, self._transaction("BEGIN"):
            rows = self._rows(db)
            head = db.execute("SELECT last_id, last_hash FROM head").fetchone()
        if head is None:
            return VerifyResult(False, len(rows), None, "the ledger's record of its last row was deleted")
        return _verify(rows, *head)

    @staticmethod
    def _rows(db: sqlite3.Connection) -> list[dict[str, Any]]:
        cursor = db.execute(f"SELECT {', '.join(COLUMNS)} FROM ledger ORDER BY id")
        return [dict(zip(COLUMNS, values)) for values in cursor]

    # --- plumbing ------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        if self._db is None:
            raise LedgerError(f"consent ledger {self.path} is closed")
        try:
            yield self._db
        except sqlite3.Error as exc:
            raise LedgerError(_describe(self.path, exc)) from None

    @contextlib.contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
        assert self._db is not None
        self._db.execute(begin)
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise LedgerError(f"consent ledger {self.path} was opened read-only")
        with self._lock, self._guard() as db, self._transaction():
            yield db


def _verify(rows: list[dict[str, Any]], head_id: int, head_hash: str) -> VerifyResult:
    def bad(row_id: int, reason: str) -> VerifyResult:
        return VerifyResult(False, len(rows), row_id, reason)

    # The chain starts at the latest purge row's anchor, or at GENESIS.
    purges = [row for row in rows if row["kind"] == "purge"]
    expected_id, prev = 1, GENESIS
    if purges:
        start = purges[-1]
        if _hash_or_none(start["prev_hash"], start) != start["hash"] or not isinstance(start["purged_through"], int):
            # an edited purge row misplaces the start; name it rather than the rows it misplaces
            return bad(start["id"], f"purge row {start['id']} was edited: its content does not match its hash")
        expected_id, prev = start["purged_through"] + 1, start["anchor"]

    for row in rows:
        row_id = row["id"]
        if row_id < expected_id:
            return bad(row_id, f"row {row_id} is out of sequence: it was inserted")
        if row_id > expected_id:
            missing = f"row {expected_id}" if row_id == expected_id + 1 else f"rows {expected_id}-{row_id - 1}"
            return bad(expected_id, f"{missing} deleted: row {row_id} follows row {expected_id - 1}")
        if row["prev_hash"] != prev:
            return bad(row_id, f"row {row_id} does not link to the row before it: it was inserted or replaced")
        if _hash_or_none(prev, row) != row["hash"]:
            return bad(row_id, f"row {row_id} was edited: its content does not match its hash")
        prev, expected_id = row["hash"], row_id + 1
    last_id = expected_id - 1
    if head_id > last_id:
        missing = f"row {head_id}" if head_id == last_id + 1 else f"rows {last_id + 1}-{head_id}"
        return bad(last_id + 1, f"{missing} deleted from the end of the ledger")
    if head_id < last_id:
        return bad(head_id + 1, f"row {head_id + 1} was inserted after the last recorded row")
    if rows and head_hash != prev:
        return bad(last_id, f"row {last_id} was replaced: it is not the last row the ledger wrote")
    return VerifyResult(True, len(rows), None, f"{len(rows)} row{'' if len(rows) == 1 else 's'}, chain intact")


def _hash_or_none(prev_hash: Any, row: dict[str, Any]) -> str | None:
    try:
        return row_hash(prev_hash, row)
    except (TypeError, ValueError, AttributeError):  # a tampered value of the wrong type
        return None
