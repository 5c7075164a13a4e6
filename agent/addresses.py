"""HOST:PORT arguments, the loopback-only rule, and secrets read without putting them in argv.

One parser and one loopback check for every command (relay, agent, viewer, rfb),
so an address is accepted or refused the same way everywhere.
"""
from __future__ import annotations

import getpass
import ipaddress
import os
import re
import socket
import sys

from agent.errors import UsageError

_ADDRESS = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?")


class AddressError(UsageError):
    """A HOST:PORT argument could not be understood."""


def parse_address(text: str, default_port: int | None = None, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or, with a default port, ``HOST`` -> (host, port).

    Port 0 ("pick a free one") is only meaningful for addresses we listen on.
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        raise AddressError(f"invalid address {text!r}: expected HOST:PORT")
    host = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    if port_text is None and default_port is None:
        raise AddressError(f"invalid address {text!r}: expected HOST:PORT (the port is required)")
    port = int(port_text) if port_text else default_port
    assert port is not None
    if not (0 if allow_port_zero else 1) <= port < 65536:
        raise AddressError(f"invalid port in {text!r}: expected 1-65535")
    return host, port


def require_loopback(host: str, port: int = 0) -> None:
    """Refuse to serve anything unauthenticated beyond loopback: every address ``host`` resolves to must be one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_loopback:
            raise UsageError(f"refusing to serve plain RFB on {host} ({address} is not a loopback address); "
                             "use 127.0.0.1 (and an SSH tunnel or a support session to reach it from elsewhere)")


def read_password(path: str | None, *, env: str = "REJNET_PASSWORD", prompt: str = "Session password: ",
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
