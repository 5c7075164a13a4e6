"""``rejnet-agent ctl``: the control socket protocol from a shell.

For people and for launchers written as shell scripts: human output by
default, the raw reply objects with ``--json``. Exit codes follow DESIGN §7:
0 ok, 2 usage, 1 no agent or an error reply, 4 when ``events`` sees the
session ended by the other side or consent refused.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from agent.consent.ledger import SCOPES
from agent.consent.terms import CURRENT_VERSION, load_terms, terms_sha256
from agent.control.client import ControlClient, ControlReplyError
from agent.control.protocol import EVENT_ENDED, Event, ends_by_other_side
from agent.errors import SessionEndedError, UsageError
from agent.relay.protocol import InvalidSessionIdError, format_session_id

DEFAULT_TIMEOUT = 5.0

# subcommand -> (protocol command, what a successful reply means to a person)
_SIMPLE = {
    "status": ("status", None),
    "credentials": ("credentials", None),
    "accept": ("accept", "connection accepted"),
    "reject": ("reject", "connection rejected"),
}


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # the same options are accepted before and after the subcommand
    default = argparse.SUPPRESS
    parser.add_argument("--control", metavar="PATH", default=default if suppress else None,
                        help="control socket of the agent (default: $XDG_RUNTIME_DIR/rejnet-agent/control.sock)")
    parser.add_argument("--json", action="store_true", default=default if suppress else False,
                        help="print the raw reply and event objects, one JSON object a line")
    parser.add_argument("--timeout", metavar="S", type=_positive_seconds,
                        default=default if suppress else DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the agent's answer (default {DEFAULT_TIMEOUT:g})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_common(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("status", parents=[common], help="state of the session")
    sub.add_parser("credentials", parents=[common], help="session ID and password to read to the technician")
    consent = sub.add_parser("consent", parents=[common], help="record the customer's consent")
    consent.add_argument("--scope", required=True, choices=SCOPES,
                         help="view: the technician only watches; control: also mouse and keyboard")
    consent.add_argument("--terms", metavar="FILE", help="the terms text shown (default: the packaged terms)")
    consent.add_argument("--terms-version", metavar="NAME", default=CURRENT_VERSION,
                         help=f"version name of those terms (default {CURRENT_VERSION})")
    sub.add_parser("accept", parents=[common], help="accept the pending connection")
    sub.add_parser("reject", parents=[common], help="reject the pending connection")
    scope = sub.add_parser("set-scope", parents=[common], help="change what the technician may do")
    scope.add_argument("scope", choices=SCOPES)
    terminate = sub.add_parser("terminate", parents=[common], help="end the session now")
    terminate.add_argument("--reason", help="why, at most 200 characters")
    sub.add_parser("events", parents=[common], help="print events until the session ends (Ctrl-C stops)")


def _request_of(args: argparse.Namespace) -> tuple[str, dict[str, Any], str | None]:
    """Protocol command, its arguments and the human summary of success."""
    if args.command in _SIMPLE:
        cmd, summary = _SIMPLE[args.command]
        return cmd, {}, summary
    if args.command == "consent":
        if args.terms is None:
            digest = load_terms(args.terms_version).sha256
        else:
            try:
                with open(args.terms, "rb") as handle:
                    digest = terms_sha256(handle.read())
            except OSError as exc:
                raise UsageError(f"cannot read terms file {args.terms}: {exc.strerror}") from None
        return ("consent", {"scope": args.scope, "terms_version": args.terms_version, "terms_sha256": digest},
                f"consent recorded: scope {args.scope}, terms {args.terms_version}")
    if args.command == "set-scope":
        return "set_scope", {"scope": args.scope}, f"scope set to {args.scope}"
    if args.command == "terminate":
        params = {} if args.reason is None else {"reason": args.reason}
        return "terminate", params, "session terminated"
    raise UsageError(f"unknown ctl command {args.command!r}")


def _shown_id(session: str) -> str:
    """The ID grouped ``123 456 789`` for reading over the phone; anything unexpected as it came."""
    try:
        return format_session_id(session)
    except InvalidSessionIdError:
        return session


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _human(cmd: str, reply: dict[str, Any], summary: str | None) -> str:
    fields = {key: value for key, value in reply.items() if key not in ("id", "ok")}
    lines = [] if summary is None else [summary]
    if cmd == "credentials":
        lines.append(f"Session ID: {_shown_id(str(fields.pop('session', '')))}")
        lines.append(f"Password:   {fields.pop('password', '')}")
    lines.extend(f"{key}: {_value(value)}" for key, value in fields.items())
    return "\n".join(lines) if lines else "ok"


def _event_line(event: dict[str, Any]) -> str:
    parts = [str(event.get("event"))]
    for key, value in event.items():
        if key == "event":
            continue
        text = _value(value)
        if isinstance(value, str) and (not value or any(ch.isspace() for ch in value)):
            text = json.dumps(value)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _events(args: argparse.Namespace) -> int:
    with ControlClient(args.control, timeout=args.timeout) as client:
        client.request("subscribe")
        try:
            for event in client.events():
                print(json.dumps(event) if args.json else _event_line(event), flush=True)
                if event.get("event") == EVENT_ENDED:
                    fields = {key: value for key, value in event.items() if key != "event"}
                    if ends_by_other_side(Event(EVENT_ENDED, fields)):
                        raise SessionEndedError(f"the session ended: {_value(fields.get('reason'))}")
                    return 0
        except KeyboardInterrupt:  # the normal way to stop watching
            return 0
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "events":
        return _events(args)
    cmd, params, summary = _request_of(args)
    with ControlClient(args.control, timeout=args.timeout) as client:
        reply = client.request(cmd, check=False, **params)
    if args.json:
        print(json.dumps(reply), flush=True)
    if not reply["ok"]:
        raise ControlReplyError(cmd, reply)
    if not args.json:
        print(_human(cmd, reply, summary))
    return 0

