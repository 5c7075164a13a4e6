"""``rejnet-help``: the customer's window, with the same add_arguments/run convention as agent/commands."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from typing import Sequence

from agent.errors import CaptureError, RejnetError, UsageError
from agent.launcher.catalogue import LANGUAGES, Catalogue, pick_language
from agent.launcher.config import default_config_path, resolve
from agent.launcher.logic import CONFIRM_TIMEOUT, Launcher
from agent.launcher.model import Terms

DESCRIPTION = ("The customer's window (Pomoc zdalna): service terms and consent, the session ID and password to "
               "read out, and the in-session bar with Zakończ sesję. Starts the agent in the background and ends "
               "it on close.")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError("must be between 1 and 3600 seconds")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--relay", metavar="HOST:PORT",
                        help="the relay the agent registers with (default: $REJNET_RELAY, then the config file)")
    parser.add_argument("--lang", choices=LANGUAGES,
                        help="language of the window (default: English for an en* locale in LANG, else Polish)")
    parser.add_argument("--confirm-each", action="store_true",
                        help="ask the customer to allow each connection; no answer rejects it")
    parser.add_argument("--confirm-timeout", type=_seconds, default=CONFIRM_TIMEOUT, metavar="S",
                        help="seconds the customer has to allow a connection (default %(default)g)")
    parser.add_argument("--config", metavar="PATH",
                        help=f"settings file (default: {default_config_path()}); keys: relay, confirm_each")
    parser.add_argument("--agent", metavar="COMMAND",
                        help="the agent program to start (default: this installation's rejnet-agent); it must "
                             "speak the control socket protocol of DESIGN §4.4")


def build_model(args: argparse.Namespace) -> Launcher:
    """The window logic for these arguments (no Tk needed)."""
    from agent.consent.terms import load_terms

    settings = resolve(args.relay, args.confirm_each, args.config)
    try:
        language = pick_language(args.lang)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    packaged = load_terms()
    terms = Terms(version=packaged.version, text=packaged.text, sha256=packaged.sha256)
    return Launcher(Catalogue(language), terms, relay=settings.relay, confirm_each=settings.confirm_each,
                    confirm_timeout=args.confirm_timeout)


def run(args: argparse.Namespace) -> int:
    model = build_model(args)
    command = shlex.split(args.agent) if args.agent else None
    if command == []:
        raise UsageError("--agent needs a command")
    try:
        import tkinter
    except ImportError:
        raise CaptureError("this Python has no Tk (install python3-tk) so the window cannot open") from None
    from agent.launcher.window import open_window

    try:
        return open_window(model, agent_command=command)
    except tkinter.TclError as exc:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise CaptureError("no display to open the window on ($DISPLAY is not set)") from None
        raise CaptureError(f"cannot open the window: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent.launcher``: rejnet-help without going through agent.commands (a layer above this one).

    The console script is ``agent.commands.help_main``, which runs the same
    add_arguments/run with the commands' full error handling; this is the
    same command line with the same exit codes for expected failures.
    """
    parser = argparse.ArgumentParser(prog="rejnet-help", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (repeatable)")
    add_arguments(parser)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=max(logging.WARNING - 10 * args.verbose, logging.DEBUG), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return run(args)
    except RejnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
