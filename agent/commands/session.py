"""``rejnet-agent`` with no command: start a support session and run it to its end."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys

from agent.commands import event_loop
from agent.commands.options import add_churn_fps
from agent.commands.screens import add_backend_argument, add_screen_arguments, open_screen
from agent.session import lifecycle as lc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    link = parser.add_mutually_exclusive_group()
    link.add_argument("--relay", metavar="HOST:PORT", help="the relay to register with (default: $REJNET_RELAY)")
    link.add_argument("--listen", metavar="HOST:PORT",
                      help="accept a viewer directly on this address (LAN), with the same encrypted channel")
    add_screen_arguments(parser, what="share")
    add_backend_argument(parser)
    parser.add_argument("--control", metavar="PATH", help="control socket path "
                        "(default: $XDG_RUNTIME_DIR/rejnet-agent/control.sock)")
    parser.add_argument("--consent-db", metavar="PATH", help="consent ledger (default: ~/.local/share/rejnet-agent/consent.db)")
    parser.add_argument("--confirm-each", action="store_true",
                        help="the customer must accept each connection ('rejnet-agent ctl accept'); no answer rejects")
    parser.add_argument("--confirm-timeout", type=float, default=120.0, metavar="S",
                        help="seconds to wait for accept/reject (default %(default)s)")
    parser.add_argument("--consent", choices=("view", "control"), metavar="view|control",
                        help="record the customer's consent to the packaged service terms at start "
                             "(what a launcher does with 'ctl consent'); without it, nothing is shared until consent")
    parser.add_argument("--fps", type=float, default=30.0, help="highest capture rate (default %(default)s)")
    add_churn_fps(parser)
    parser.add_argument("--keep-waiting", action="store_true",
                        help="after the technician leaves, wait for a new one (new password, fresh consent) "
                             "instead of ending the session")
    parser.add_argument("--resume-timeout", type=float, default=120.0, metavar="S",
                        help="how long a technician whose connection was cut may take to resume (default %(default)s)")
    parser.add_argument("--no-compression", dest="compress", action="store_false",
                        help="send the screen without the channel's long-window compression: less CPU on this "
                             "PC, several times the bytes on text (default: compress)")
    parser.add_argument("--json", action="store_true",
                        help="machine-readable: a {\"event\":\"ready\",...} line, then one JSON event per line; "
                             "a failure to start is a {\"event\":\"error\",\"message\":...,\"exit_code\":N} line")


def run(args: argparse.Namespace) -> int:
    from agent.errors import RejnetError

    try:
        return _run(args)
    except RejnetError as exc:
        if args.json:  # a launcher reads stdout: the failure as an event too (stderr keeps the sentence)
            from agent.errors import printable

            event = {"event": "error", "message": printable(exc), "exit_code": exc.exit_code}
            if getattr(exc, "code", None):
                event["code"] = exc.code
            print(json.dumps(event), flush=True)
        raise


def _run(args: argparse.Namespace) -> int:
    from agent.session.agent import AgentConfig

    relay = args.relay or (None if args.listen else os.environ.get("REJNET_RELAY"))
    if args.backend and args.screen:
        from agent.errors import UsageError

        raise UsageError("--backend chooses how the real desktop is shared: it cannot be combined with --screen")
    config = AgentConfig(relay=relay, listen=args.listen, display=args.display, backend=args.backend,
                         source=open_screen(args.screen) if args.screen else None,
                         control_path=args.control, consent_db=args.consent_db, confirm_each=args.confirm_each,
                         confirm_timeout=args.confirm_timeout, fps=args.fps, churn_fps=args.churn_fps,
                         keep_waiting=args.keep_waiting, resume_timeout=args.resume_timeout,
                         compress=args.compress)
    return event_loop.run(_main(config, args.json, args.consent))


async def _main(config, as_json: bool, consent: str | None = None) -> int:
    from agent.relay.protocol import format_session_id
    from agent.session.agent import Agent

    def show(session_id: str, password: str) -> None:
        if not as_json:
            print(f"Session ID: {format_session_id(session_id)}\nPassword:   {password}\n"
                  "Read both to the technician. Press Ctrl-C to end the session.", flush=True)

    agent = Agent(config, on_credentials=show)
    await agent.start()
    if consent:
        from agent.errors import RefusedError, RejnetError

        try:
            await agent.consent(consent)
        except RefusedError as exc:
            await agent.close()
            raise RejnetError(str(exc)) from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, agent._apply, lc.Terminate(by="signal", reason=f"stopped by {sig.name}"))
    if as_json:
        ready = {"event": "ready", "control": agent.control.path if agent.control else None,
                 "session": agent.machine.session_id, "state": agent.machine.state.value}
        if agent.listen_address:
            ready["listen"] = "%s:%d" % agent.listen_address
        print(json.dumps(ready), flush=True)

    async def printer() -> None:
        async for event in agent.events():
            if as_json:
                print(json.dumps(event), flush=True)
            elif event.get("event") in ("viewer", "viewer_left", "password_rotated", "confirm", "safety_code",
                                        "reconnecting", "resumed"):
                print(_describe(event), flush=True)

    printing = asyncio.create_task(printer())
    try:
        reason, code = await agent.wait()
    finally:
        await agent.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(printing, 1.0)
    if not as_json:
        print(f"Session ended: {reason}", file=sys.stderr)
    return code


def _describe(event: dict) -> str:
    kind = event.get("event")
    if kind == "viewer":
        return f"Technician connected from {event.get('address')}"
    if kind == "safety_code":
        return f"Safety code: {event.get('code')} (the technician's viewer shows the same; compare them on the phone)"
    if kind == "viewer_left":
        return f"Technician disconnected ({event.get('reason')})"
    if kind == "password_rotated":
        if event.get("reason") == "used":
            return "The password was used and no longer works: a new one was issued (see 'rejnet-agent ctl credentials')"
        return "Too many wrong passwords: a new password was issued (see 'rejnet-agent ctl credentials')"
    if kind == "reconnecting":
        return "The technician's connection was cut: reconnecting (input is off meanwhile)"
    if kind == "resumed":
        return "The technician's connection is back"
    if kind == "confirm":
        return "A technician is waiting: give consent / accept with 'rejnet-agent ctl consent --scope view' / 'ctl accept'"
    return str(event)
