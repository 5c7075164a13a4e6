"""Parsing HOST:PORT arguments and reading secrets without putting them in argv."""
from __future__ import annotations

import getpass
import os
import sys

from agent.errors import UsageError


def parse_hostport(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """'host:port', '[::1]:port' or (with a default) 'host' -> (host, port)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if text.startswith("[") and "]" in text:
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        sep = ":" if port else ""
    if not sep:
        if default_port is None:
            raise UsageError(f"expected HOST:PORT, got {text!r}")
        host, port = text, str(default_port)
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"bad port in {text!r}") from None
    if not 0 <= number <= 65535 or not host:
        raise UsageError(f"bad address {text!r}")
    return host, number


def read_password(path: str | None, *, env: str = "REJNET_PASSWORD", prompt: str = "Session password: ") -> str:
    """The password from a file, the environment or an interactive prompt (never from argv)."""
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.readline().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the password file {path}: {exc.strerror}") from None
        if not value:
            raise UsageError(f"the password file {path} is empty")
        return value
    value = os.environ.get(env, "").strip()
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass(prompt).strip()
        if value:
            return value
    raise UsageError(f"no password: use --password-file FILE, set {env}, or run interactively")
