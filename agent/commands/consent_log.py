"""``rejnet-agent consent-log``: verify, export or purge the consent ledger.

verify and export open the ledger read-only, so they also work on an
auditor's copy or a file this user may not write; purge needs write access.
"""
from __future__ import annotations

import argparse
import json
import sys

from agent.consent.ledger import (
    RETENTION_YEARS,
    ConsentLedger,
    LedgerError,
    default_ledger_path,
)


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # the same options are accepted before and after the subcommand
    parser.add_argument("--consent-db", metavar="PATH",
                        default=argparse.SUPPRESS if suppress else None,
                        help="the ledger file (default: $XDG_DATA_HOME/rejnet-agent/consent.db)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print the result as one JSON object")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("verify", parents=[common],
                   help="check the hash chain; names the first edited, inserted or deleted row (exit 1)")
    export = sub.add_parser("export", parents=[common], help="write every row as a JSON line")
    export.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    sub.add_parser("purge", parents=[common],
                   help=f"remove rows older than {RETENTION_YEARS} years and record that it did")


def _verify(ledger: ConsentLedger, as_json: bool) -> int:
    result = ledger.verify()
    if as_json:
        print(json.dumps({"ok": result.ok, "rows": result.rows, "first_bad": result.first_bad,
                          "reason": result.reason}))
    elif result.ok:
        print(f"ok: {result.reason}")
    else:
        print(f"BROKEN at row {result.first_bad}: {result.reason}")
    return 0 if result.ok else 1


def _export(ledger: ConsentLedger, out_path: str | None, as_json: bool) -> int:
    if out_path is None:
        ledger.export(sys.stdout)
        return 0
    try:
        with open(out_path, "w", encoding="utf-8") as out:
            count = ledger.export(out)
    except OSError as exc:
        raise LedgerError(f"cannot write the export to {out_path}: {exc.strerror}") from None
    print(json.dumps({"exported": count, "out": out_path}) if as_json else f"exported {count} rows to {out_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    path = args.consent_db or default_ledger_path()
    if args.command == "purge":
        with ConsentLedger(path) as ledger:
            count = ledger.purge()
        print(json.dumps({"purged": count}) if args.json
              else f"purged {count} rows older than {RETENTION_YEARS} years")
        return 0
    with ConsentLedger(path, read_only=True) as ledger:
        if args.command == "verify":
            return _verify(ledger, args.json)
        return _export(ledger, args.out, args.json)
