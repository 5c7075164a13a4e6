"""``rejnet-viewer SESSION_ID``: the technician's command."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys

from agent.commands import event_loop
from agent.commands.options import PASSWORD_ENV, read_password
from agent.errors import UsageError
from agent.models import parse_address
from agent.relay.protocol import DEFAULT_PORT, parse_session_id
from agent.session.password import normalize_input
from agent.viewer.bridge import DEFAULT_LISTEN, BridgeConfig, ViewerBridge


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION_ID", help="the 9-digit session ID the customer reads out (any spacing)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--relay", metavar="HOST:PORT", help="relay address (default: $REJNET_RELAY)")
    where.add_argument("--direct", metavar="HOST:PORT", help="connect straight to an agent started with --listen")
    parser.add_argument("--listen", metavar="127.0.0.1:PORT", default=f"{DEFAULT_LISTEN[0]}:{DEFAULT_LISTEN[1]}",
                        help="where local VNC viewers connect (loopback only; default %(default)s; port 0 picks one)")
    parser.add_argument("--password-file", metavar="F", help="read the session password from F "
                        "(else $REJNET_PASSWORD, else a prompt)")
    parser.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                        help="start a VNC viewer once ready, e.g. 'vncviewer {host}::{port}'; the session ends when it exits")
    parser.add_argument("--json", action="store_true", help="print events as JSON lines on stdout")
    parser.add_argument("--web", nargs="?", const="127.0.0.1:0", metavar="127.0.0.1:PORT",
                        help="also serve the technician's console in the browser (loopback only; default a free port)")
    parser.add_argument("--no-browser", action="store_true", help="with --web: only print the console's URL")
    parser.add_argument("--resume-timeout", metavar="S", type=float, default=120.0,
                        help="how long to keep resuming a cut connection before the session ends (default %(default)s)")
    parser.add_argument("--pull", action="store_true",
                        help="pass every update request of the VNC viewer on to the agent, and let it send an update "
                             "only when asked (by default the first request stands and changes come as they happen: "
                             "for a viewer that ignores updates it did not ask for)")


def run(args: argparse.Namespace) -> int:
    session_id = parse_session_id(args.session)
    relay = direct = None
    if args.direct:
        direct = parse_address(args.direct)
    else:
        relay_text = args.relay or os.environ.get("REJNET_RELAY")
        if not relay_text:
            raise UsageError("no relay: pass --relay HOST:PORT or set REJNET_RELAY (or --direct HOST:PORT)")
        relay = parse_address(relay_text, DEFAULT_PORT)
    listen = parse_address(args.listen, allow_port_zero=True)
    # people read the password in groups and may type capitals or dashes
    password = normalize_input(read_password(args.password_file))
    if args.resume_timeout <= 0:
        raise UsageError("--resume-timeout must be positive")
    config = BridgeConfig(session_id=session_id, password=password, relay=relay, direct=direct, listen=listen,
                          resume_timeout=args.resume_timeout, standing_requests=not args.pull)
    web = _web_config(args, session_id)
    return event_loop.run(_main(config, args.exec_cmd, args.json, web, not args.no_browser))


def _web_config(args: argparse.Namespace, session_id: str):
    if args.web is None:
        if args.no_browser:
            raise UsageError("--no-browser goes with --web")
        return None
    from agent.viewer.web import ConsoleConfig

    return ConsoleConfig(session_id=session_id, listen=parse_address(args.web, allow_port_zero=True))


STOP_GRACE = 2.0  # seconds a handshake under way may take to finish after Ctrl+C or SIGTERM


def _printer(as_json: bool):
    def emit(event: dict) -> None:
        if as_json:
            print(json.dumps(event), flush=True)
            return
        kind = event.get("event")
        if kind == "authenticated":
            print(f"Connected. Safety code: {event['safety_code']} (ask the customer to confirm it)", flush=True)
        elif kind == "listening":
            print(f"Point a VNC viewer at {event['host']}::{event['port']}", flush=True)
        elif kind == "local_viewer":
            state = "connected" if event["connected"] else "disconnected"
            print(f"Local viewer {state}", flush=True)
        elif kind == "reconnecting":
            print("reconnecting: the connection to the customer was lost; resuming", file=sys.stderr, flush=True)
        elif kind == "resumed":
            dropped = event.get("input_dropped") or 0
            note = f" ({dropped} key and mouse events made during the cut were not sent)" if dropped else ""
            print(f"reconnected{note}", file=sys.stderr, flush=True)
    return emit


async def _main(config: BridgeConfig, exec_cmd: str | None, as_json: bool, web=None, open_browser: bool = True) -> int:
    emit = _printer(as_json)
    console = None
    if web is not None:
        from agent.viewer.web import WebConsole

        console = WebConsole(web)
        printer = emit

        def emit(event: dict) -> None:
            printer(event)
            console.on_event(event)
    bridge = ViewerBridge(config, on_event=emit)
    loop = asyncio.get_running_loop()
    # Signals are caught before authenticating: one that lands between the handshake and the first local
    # client must still end the session for both sides (the authenticated CLOSE), not look like a cut link.
    stop_requested = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_requested.set)
    await _start_unless_stopped(bridge, stop_requested)
    if console is not None:
        try:
            await console.start(bridge)
        except BaseException:
            await bridge.close()
            raise
        _announce_console(console, as_json, open_browser)
    stopper = asyncio.ensure_future(stop_requested.wait())
    stopper.add_done_callback(lambda _: bridge.stop())
    child = None
    watcher = None
    if exec_cmd:
        assert bridge.address is not None
        host, port = bridge.address
        argv = [part.format(host=host, port=port, display=port - 5900) for part in shlex.split(exec_cmd)]
        try:
            child = await asyncio.create_subprocess_exec(*argv, env=_child_environment())
        except OSError as exc:
            await bridge.close()
            raise UsageError(f"cannot start {argv[0]}: {exc.strerror}") from None

        async def watch() -> None:
            await child.wait()
            bridge.stop()

        watcher = asyncio.create_task(watch())
    try:
        await bridge.wait()
    finally:
        stopper.cancel()
        if console is not None:
            await console.close()  # the page shows "ended" with the reason before the server stops
        if watcher is not None:
            watcher.cancel()
        if child is not None and child.returncode is None:
            child.terminate()
        await bridge.close()
    if as_json:
        emit({"event": "ended", "reason": "closed"})
    else:
        print("Session closed", file=sys.stderr)
    return 0


def _child_environment() -> dict[str, str]:
    """The --exec viewer's environment: ours without the session password (it has no use for it, and
    anything it starts or crashes with would carry it)."""
    return {name: value for name, value in os.environ.items() if name != PASSWORD_ENV}


async def _start_unless_stopped(bridge: ViewerBridge, stop_requested: asyncio.Event) -> None:
    """Authenticate; a signal meanwhile lets a nearly finished handshake complete (so the end is sent
    authenticated), but does not wait out a slow connect."""
    start = asyncio.ensure_future(bridge.start())
    stopped = asyncio.ensure_future(stop_requested.wait())
    try:
        await asyncio.wait({start, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            await asyncio.wait({start}, timeout=STOP_GRACE)
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
            raise KeyboardInterrupt
        start.result()
    finally:
        stopped.cancel()


def _announce_console(console, as_json: bool, open_browser: bool) -> None:
    """Print the console's URL (it holds the token: stdout only, never a log) and open the browser."""
    if as_json:
        print(json.dumps({"event": "web", "url": console.url}), flush=True)
    else:
        print(f"Technician's console: {console.url}", flush=True)
    if open_browser:
        import webbrowser

        # the browser gets a 0600 file that forwards to the URL: the token stays out of `ps`
        if not webbrowser.open(console.redirect_file().as_uri()):
            print("No browser could be started; open the address above", file=sys.stderr, flush=True)


if __name__ == "__main__":  # python -m agent.commands.viewer, as the link benchmark starts it
    from agent.commands import viewer_main

    sys.exit(viewer_main())
