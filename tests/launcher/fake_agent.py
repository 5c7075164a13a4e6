"""A stand-in agent for the launcher's I/O tests: the real control socket server, a scripted session.

Run as ``python fake_agent.py --control PATH [--fail TEXT] [--stubborn] --json --relay X``.
It speaks DESIGN §4.4 through agent.control.server (so the launcher is tested
against the contract, not against this file): prints the ready line, answers
status/credentials/consent/set_scope/terminate, publishes the events a real
session would, and exits 0 after ``terminate``. ``--fail`` prints an error and
exits 1 before the ready line (the relay cannot be reached); ``--stubborn``
ignores terminate and SIGTERM, for the kill path. Every command it receives is
appended to ``PATH.log``, so a test can check what was sent.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from agent.control.server import ControlServer


class Session:
    def __init__(self, log_path: str, stubborn: bool) -> None:
        self.server: ControlServer | None = None
        self.log_path = log_path
        self.stubborn = stubborn
        self.state = "waiting"
        self.scope: str | None = None
        self.done = asyncio.Event()

    async def handle(self, cmd: str, args: dict) -> dict:
        with open(self.log_path, "a") as log:
            log.write(json.dumps({"cmd": cmd, **args}) + "\n")
        assert self.server is not None
        if cmd == "credentials":
            return {"session": "123456789", "password": "k3mx7q"}
        if cmd == "consent":
            self.scope = args["scope"]
            return {"recorded": True, "consent_row": 1, "scope": args["scope"]}
        if cmd == "set_scope":
            self.server.publish({"event": "state", "state": self.state, "scope": args["scope"]})
        if cmd == "terminate" and not self.stubborn:
            self.state = "ended"
            self.server.publish({"event": "state", "state": "ended", "scope": None})
            self.server.publish({"event": "ended", "by": "local", "cause": "launcher", "reason": args.get("reason")})
            asyncio.get_running_loop().call_later(0.2, self.done.set)
        return {"state": self.state, "scope": None, "viewer": None, "safety_code": None}


async def main(args: argparse.Namespace) -> int:
    if args.fail:
        print(f"error: {args.fail}", file=sys.stderr, flush=True)
        return 1
    session = Session(args.control + ".log", args.stubborn)
    server = ControlServer(session, args.control)
    session.server = server
    await server.start()
    loop = asyncio.get_running_loop()
    if args.stubborn:
        loop.add_signal_handler(signal.SIGTERM, lambda: None)
    else:
        loop.add_signal_handler(signal.SIGTERM, session.done.set)
    print(json.dumps({"event": "ready", "control": server.path, "session": "123456789", "state": "waiting"}),
          flush=True)
    await session.done.wait()
    await server.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--control", required=True)
    parser.add_argument("--fail")
    parser.add_argument("--stubborn", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--relay")
    sys.exit(asyncio.run(main(parser.parse_args())))
