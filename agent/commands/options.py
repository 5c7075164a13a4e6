"""Options shared by the commands: secrets read without putting them in argv."""
from __future__ import annotations

import argparse
import getpass
import os
import sys

from agent.errors import UsageError


PASSWORD_ENV = "REJNET_PASSWORD"


def read_password(path: str | None, *, env: str = PASSWORD_ENV, prompt: str = "Session password: ",
                  hint: str = "") -> str:
    """The password from a file's first line, the environment or an interactive prompt (never from argv).

    Taken as written (only the file's line ending is dropped); ``hint`` names
    the caller's other options in the "no password" message.
    """
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.readline().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(f"cannot read the password file {path}: {exc.strerror}") from None
        if not value:
            raise UsageError(f"the password file {path} is empty: its first line is the password")
        return value
    value = os.environ.get(env, "")
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if value:
            return value
        raise UsageError("an empty password is not allowed")
    raise UsageError(f"no password: use --password-file FILE, set {env}{hint}, or run interactively")


def add_churn_fps(parser: argparse.ArgumentParser) -> None:
    """``--churn-fps``: how often an area that never stops changing is grabbed (agent.service.churn_damage)."""
    from agent.service.capture_loop import CHURN_FPS
    from agent.service.rfb_service import MAX_FPS

    def rate(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not 0 <= value <= MAX_FPS:
            raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_FPS:g}, got {text}")
        return value

    parser.add_argument("--churn-fps", type=rate, default=CHURN_FPS, metavar="N",
                        help="grabs a second of an area that never stops changing (a scrolling log, an "
                             "animation) of up to 300,000 pixels; a larger one is grabbed less often, in "
                             "proportion; the rest of the screen keeps --fps, and so does everything for 1 s "
                             "after the technician moves the mouse (default %(default)g; 0: every area at --fps)")
