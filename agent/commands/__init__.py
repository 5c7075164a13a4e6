"""Console entry points: rejnet-agent, rejnet-viewer, rejnet-relay, rejnet-help (DESIGN §7), one module per command.

Every command is a module here with the same two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this file only
dispatches and turns expected failures (RejnetError) into a one-line message
and the exit code DESIGN §7 assigns, never a traceback. Modules are imported
only when their command runs, so ``--help`` of one does not load the others.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Callable, Sequence

from agent.errors import RejnetError, printable

# name -> (module, one-line help)
AGENT_COMMANDS: dict[str, tuple[str, str]] = {
    "ctl": ("agent.commands.ctl", "talk to a running agent over its control socket"),
    "rfb": ("agent.commands.rfb", "serve the screen as plain RFB to local VNC viewers (loopback only)"),
    "demo": ("agent.commands.demo", "run the whole chain on loopback: relay, agent, viewer, technician"),
    "probe": ("agent.commands.probe", "capture the display for a few seconds and report detection figures"),
    "consent-log": ("agent.commands.consent_log", "verify, export or purge the consent ledger"),
}
SESSION_MODULE = "agent.commands.session"

_EPILOG = "commands:\n" + "\n".join(
    f"  {name:<12} {text}" for name, (_, text) in AGENT_COMMANDS.items()
) + "\n\nWithout a command, rejnet-agent starts a support session.\nExit codes: 0 normal end, 2 usage, 3 authentication failed, 4 consent refused\nor ended by the other side, 5 display or capture unavailable, 1 anything else."


def _setup_logging(verbose: int) -> None:
    from agent.session.password import RedactingFilter

    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # a filter on a handler sees every logger's records
        handler.addFilter(RedactingFilter())


def _no_core_dumps() -> None:
    """A crash must not write the process's memory (session password, channel keys) to a core file."""
    try:
        import resource
    except ImportError:  # Windows has no core files to limit
        return
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):  # pragma: no cover - a hard limit we may not lower is already 0
        pass


def _run(module_name: str, prog: str, description: str, argv: Sequence[str], epilog: str | None = None) -> int:
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (repeatable)")
    module.add_arguments(parser)
    args = parser.parse_args(list(argv))
    _setup_logging(args.verbose)
    return int(module.run(args) or 0)


def _guarded(main: Callable[[], int]) -> int:
    _no_core_dumps()
    try:
        return main()
    except RejnetError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)  # it may quote the relay or the agent
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except TimeoutError:  # asyncio.TimeoutError is TimeoutError since Python 3.11
        print("error: timed out waiting for the other side; check the address and try again", file=sys.stderr)
        return 1
    except ConnectionError as exc:
        print(f"error: connection failed: {printable(exc.strerror or exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # stdout closed by a pager or a launcher that went away
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1


def agent_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in AGENT_COMMANDS:
        name = argv[0]
        module, text = AGENT_COMMANDS[name]
        code = _guarded(lambda: _run(module, f"rejnet-agent {name}", text, argv[1:]))
    else:
        code = _guarded(lambda: _run(SESSION_MODULE, "rejnet-agent", "Start a remote-support session: shows a session ID "
                                     "and one-time password, waits for the technician and for the customer's consent.",
                                     argv, _EPILOG))
    return code


def viewer_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guarded(lambda: _run("agent.commands.viewer", "rejnet-viewer", "Connect to a customer's session and serve it "
                                 "as plain RFB on loopback for any VNC viewer.", argv))


def relay_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guarded(lambda: _run("agent.commands.relay", "rejnet-relay", "Pair agents and viewers by session ID and forward "
                                 "their encrypted bytes.", argv))


def help_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return _guarded(lambda: _run("agent.launcher.cli", "rejnet-help", "The customer's window (Pomoc zdalna): service "
                                 "terms and consent, the session ID and password to read out, and the in-session bar "
                                 "with Zakończ sesję. Starts the agent in the background and ends it on close.", argv))


def _exit(code: int) -> None:
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    _exit(agent_main())
