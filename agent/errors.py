"""Exceptions shared across the agent, each mapped to a DESIGN §7 exit code.

Every exception here is written for the person who meets it: its message is a
single line that says what happened and what to do. Messages never contain a
password, key or other secret.
"""
from __future__ import annotations


class RejnetError(Exception):
    """Base of every expected failure; the CLI prints ``str(exc)`` and exits with ``exit_code``."""

    exit_code = 1


class UsageError(RejnetError):
    """The command line or a configuration value is invalid."""

    exit_code = 2


class AuthenticationError(RejnetError):
    """The password was wrong or the peer could not prove it knows it."""

    exit_code = 3


class SessionEndedError(RejnetError):
    """Consent was refused or the other side ended the session."""

    exit_code = 4


class CaptureError(RejnetError):
    """The display cannot be captured (missing, unreachable, Wayland without X)."""

    exit_code = 5


class RefusedError(RejnetError):
    """The agent refused a request and changed nothing; ``code`` says why, for a program.

    ``code`` is a short machine-readable word (``not_allowed``, ``ledger`` ...)
    and ``message`` one line for a person; neither may hold a secret. The
    control socket answers any RefusedError with the error reply
    ``{"code": code, "message": message}``; the CLI prints ``str(exc)``,
    which is ``"<code>: <message>"``. Subclasses fix their ``code``.
    """

    code = "refused"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message
        super().__init__(f"{self.code}: {message}")


MAX_SHOWN = 500  # characters of remote-written text shown to a person; the rest is cut with an ellipsis


def printable(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` made safe to show in a terminal or a window: control characters out, length bounded.

    Anything a remote party wrote (a relay's error reason, the agent's CLOSE
    reason, an exception message quoting them) goes through here before a
    person sees it, so an ESC sequence (a screen clear, an OSC 52 clipboard
    write) or a bidi override cannot act on the technician's terminal.
    """
    cleaned = "".join(ch if ch.isprintable() else ("\ufffd" if ch not in "\t\n\r" else " ") for ch in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1] + "…"
