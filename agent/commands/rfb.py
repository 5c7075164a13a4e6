"""``rejnet-agent rfb``: plain RFB on loopback for local VNC viewers and SSH tunnels.

No encryption and, with ``--no-auth``, no password: so it refuses any
address that is not loopback. ``--control`` lets viewers drive the display
(X11 XTest); the default is view-only.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from typing import Optional

from agent.capture.base import ScreenSource
from agent.commands import event_loop
from agent.commands.options import add_churn_fps, read_password
from agent.commands.screens import add_screen_arguments, open_screen
from agent.errors import CaptureError, UsageError
from agent.inputs.base import InputBackend, InputError
from agent.models import parse_address
from agent.net import require_loopback, stop_server
from agent.rfb import vncauth
from agent.service.rfb_service import MAX_FPS, RFBService

log = logging.getLogger(__name__)


def parse_loopback_listen(value: str) -> tuple[str, int]:
    """HOST:PORT where HOST resolves only to loopback addresses; UsageError otherwise."""
    host, port = parse_address(value, allow_port_zero=True)
    require_loopback(host, port)
    return host, port


def _read_password(args: argparse.Namespace) -> Optional[str]:
    env = os.environ.get("REJNET_PASSWORD")
    if args.no_auth:
        if env:
            raise UsageError("--no-auth conflicts with REJNET_PASSWORD being set; unset one of them")
        return None
    password = read_password(args.password_file, prompt="VNC password for viewers: ", hint=", or pass --no-auth")
    if vncauth.password_truncated(password):
        log.warning("VNC authentication only uses the first 8 characters of the password")
    return password


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, metavar="127.0.0.1:PORT",
                        help="loopback address to listen on (non-loopback addresses are refused)")
    add_screen_arguments(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--view-only", action="store_true", default=True,
                      help="drop viewers' keyboard and mouse input (the default)")
    mode.add_argument("--control", action="store_true",
                      help="let viewers drive this display's keyboard and mouse (X11 XTest)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--no-auth", action="store_true", help="no VNC password (anyone on this machine can view)")
    auth.add_argument("--password-file", metavar="F",
                      help="file whose first line is the VNC password (else REJNET_PASSWORD, else a prompt)")
    parser.add_argument("--fps", type=float, default=30.0, help="capture rate while the screen changes (default 30)")
    add_churn_fps(parser)


async def _serve(source: ScreenSource, host: str, port: int, password: Optional[str], fps: float,
                 input_backend: Optional[InputBackend], churn_fps: float) -> int:
    service = RFBService(source, password=password, input_backend=input_backend, fps=fps, churn_fps=churn_fps)
    security = "vnc" if password else "none"
    await service.start()
    server = await asyncio.start_server(
        lambda r, w: service.serve_connection(r, w, security=security), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"listening on {shown}:{bound[1]} ({source.description or 'screen'}, "
          f"{'VNC password' if password else 'no authentication'})", flush=True)
    try:
        while not stop.is_set() and service.failure is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await stop_server(server)
        await service.close()
        await server.wait_closed()
    if isinstance(service.failure, CaptureError):
        raise service.failure
    return 0 if service.failure is None else 1


def run(args: argparse.Namespace) -> int:
    if not 0 < args.fps <= MAX_FPS:
        raise UsageError(f"--fps must be in (0, {MAX_FPS:g}]")
    host, port = parse_loopback_listen(args.listen)
    password = _read_password(args)
    if args.control and args.screen:
        raise UsageError("--control needs a real display, not a synthetic screen")
    source = open_screen(args.screen, args.display)
    input_backend: Optional[InputBackend] = None
    try:
        if args.control:
            from agent.inputs import open_input_backend

            try:
                input_backend = open_input_backend(args.display, source=source)  # XTest, or GNOME RemoteDesktop
            except InputError as exc:
                raise CaptureError(f"cannot inject input: {exc}") from None
        return event_loop.run(_serve(source, host, port, password, args.fps, input_backend, args.churn_fps))
    finally:
        if input_backend is not None:
            input_backend.close()
        source.close()
