"""``rejnet-relay [--listen HOST:PORT] [--json]``: run the relay until SIGINT or SIGTERM.

The relay's events (registrations, pairings, timeouts) are its output, so they
go to stderr at INFO level whatever ``-v`` says: one line each, or one JSON
object each with ``--json``. Session IDs appear truncated, never whole, and no
address or secret is logged.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time

from agent.commands import event_loop
from agent.errors import RejnetError
from agent.relay.protocol import DEFAULT_PORT, parse_address
from agent.relay.server import RelayServer

DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address to listen on (default {DEFAULT_LISTEN})")
    parser.add_argument("--json", action="store_true", help="log one JSON object a line on stderr")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {"time": round(record.created, 3), "level": record.levelname.lower(),
                "event": getattr(record, "relay_event", None) or record.getMessage()}
        body.update(getattr(record, "relay_fields", {}))
        return json.dumps(body, ensure_ascii=False, default=str)


def _configure_logging(as_json: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s rejnet-relay %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    logger = logging.getLogger("agent.relay")
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.propagate = False
    return handler


async def _serve(host: str, port: int) -> None:
    server = RelayServer(host, port)
    try:
        await server.start()
    except OSError as exc:
        raise RejnetError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await server.close()


def run(args: argparse.Namespace) -> int:
    host, port = parse_address(args.listen)
    handler = _configure_logging(args.json)
    try:
        event_loop.run(_serve(host, port))
    finally:
        logging.getLogger("agent.relay").removeHandler(handler)
    return 0


if __name__ == "__main__":  # python -m agent.commands.relay, as the link benchmark starts it
    from agent.commands import relay_main

    sys.exit(relay_main())
