"""The one-time session password: generation, redaction, failure counting, rotation.

The customer reads the password to the technician over the phone, so it is
short and drawn from an alphabet without look-alikes (no 0/o, 1/l/i). It is
short because the PAKE (DESIGN §4.2) gives an attacker nothing to test
offline: every guess costs a live connection, and after ``MAX_FAILURES``
wrong guesses the password is replaced (``PasswordPolicy``), so online
guessing stays bounded at 3 tries per value.

The value lives in a ``SessionPassword`` whose repr/str/format never show it
and which refuses to be pickled; ``reveal()`` is for the two places that need
the text (the ``credentials`` control reply and the PAKE). ``wipe()`` zeroes
our own buffer; Python may still hold copies of strings made by ``reveal()``,
so wiping is best effort against memory dumps, exact against our own objects.
"""
from __future__ import annotations

import hmac
import logging
import secrets
import time
import weakref
from typing import Callable

from agent.errors import RejnetError

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
"""Lowercase letters and digits without 0/o and 1/l/i: 31 symbols, easy to dictate."""

LENGTH = 6
"""31**6 is about 8.9e8 values (29.7 bits): ample when each guess is one online attempt."""

MAX_FAILURES = 3
"""Wrong guesses allowed against one password value before it is rotated (DESIGN §4.2 point 4)."""

FREE_FAILURES = 3
"""Wrong guesses in a session before any back-off: a technician who mistypes is not slowed down."""

BACKOFF_BASE = 2.0
BACKOFF_MAX = 30.0
"""Beyond FREE_FAILURES, the n-th wrong guess in the session (whatever password value it was against)
holds off the next guess for BACKOFF_BASE * 2**(n - FREE_FAILURES - 1) seconds, at most BACKOFF_MAX:
2, 4, 8, 16, 30, 30 ... So a stranger gets about two guesses a minute, a few more with handshakes run
at once (lifecycle.MAX_PENDING_HANDSHAKES): some 8.9e8 guesses expected against 31**6 values is
centuries; and the technician waits at most BACKOFF_MAX after the last wrong guess."""

ROTATION_INTERVAL = 60.0
"""At most one rotation caused by wrong guesses per this many seconds: a stranger cannot make the
password the customer is dictating go stale every few seconds. Near the limit the guess that would
rotate again is refused (not run, not counted) until the interval has passed."""

MASK = "******"

_MAX_VALUE_LENGTH = 256

# Live passwords, for RedactingFilter; weak so a dropped password is not kept alive.
_LIVE: "weakref.WeakSet[SessionPassword]" = weakref.WeakSet()


class PasswordWipedError(RejnetError):
    """The session password was already wiped because the session ended; there is nothing to reveal.

    Start a new session for a new password.
    """


class SessionPassword:
    """A session password that never shows itself in logs, reprs or exception text."""

    __slots__ = ("_value", "__weakref__")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value or len(value) > _MAX_VALUE_LENGTH:
            # The message deliberately does not echo the value.
            raise ValueError(f"a session password must be a non-empty string of at most {_MAX_VALUE_LENGTH} characters")
        self._value: bytearray | None = bytearray(value.encode("utf-8"))
        _LIVE.add(self)

    @classmethod
    def generate(cls, length: int = LENGTH) -> "SessionPassword":
        """A fresh random password from ``ALPHABET``, drawn with ``secrets``."""
        if length < 4:
            raise ValueError("a session password needs at least 4 characters")
        return cls("".join(secrets.choice(ALPHABET) for _ in range(length)))

    def reveal(self) -> str:
        """The password text, for the credentials reply and the PAKE only."""
        if self._value is None:
            raise PasswordWipedError("the session password was wiped when the session ended")
        return self._value.decode("utf-8")

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison with what a person typed; False once wiped."""
        if self._value is None or not isinstance(candidate, str):
            return False
        return hmac.compare_digest(bytes(self._value), candidate.encode("utf-8"))

    def wipe(self) -> None:
        """Zero the stored value and forget it. Idempotent."""
        if self._value is not None:
            for i in range(len(self._value)):
                self._value[i] = 0
            self._value = None
        _LIVE.discard(self)

    @property
    def wiped(self) -> bool:
        return self._value is None

    def __repr__(self) -> str:
        return "SessionPassword(wiped)" if self._value is None else f"SessionPassword({MASK})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __reduce__(self) -> object:
        # Pickling would copy the secret into a cache, a queue or a file.
        raise TypeError("a SessionPassword cannot be pickled")

    def __copy__(self) -> "SessionPassword":
        raise TypeError("a SessionPassword cannot be copied; pass the object itself")

    def __deepcopy__(self, memo: object) -> "SessionPassword":
        raise TypeError("a SessionPassword cannot be copied; pass the object itself")


def normalize_input(text: str) -> str:
    """What a person typed, as the password to try: spaces and dashes dropped, lowercased.

    People read the password in groups and may type capitals; the alphabet is
    lowercase only, so this loses nothing.
    """
    return "".join(ch for ch in text if not ch.isspace() and ch != "-").lower()


class PasswordPolicy:
    """Owns the session's current password and rotates it after ``max_failures`` wrong guesses.

    Failures count against the current value only and are not reset by a
    successful login: the bound is "at most ``max_failures`` online guesses per
    value", whatever happens in between.
    """

    def __init__(self, max_failures: int = MAX_FAILURES,
                 generate: Callable[[], SessionPassword] = SessionPassword.generate, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self._max_failures = max_failures
        self._generate = generate
        self._clock = clock
        self._password: SessionPassword | None = generate()
        self._failures = 0
        self._rotations = 0
        self._total = 0                       # wrong guesses in the whole session, across values
        self._last_failure = float("-inf")
        self._last_forced = float("-inf")     # the last rotation wrong guesses caused

    @property
    def total_failures(self) -> int:
        """Wrong guesses in the whole session, across password values (drives the back-off)."""
        return self._total

    def retry_after(self, in_flight: int = 0) -> tuple[float, str]:
        """Seconds before another guess may start (0.0: now) and why ("backoff", "rotation_rate" or "").

        ``in_flight``: handshakes already running, each a guess that may still fail."""
        now = self._clock()
        wait, why = 0.0, ""
        excess = self._total - FREE_FAILURES
        if excess > 0:
            backoff = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(excess - 1, 16))
            wait, why = max(0.0, self._last_failure + backoff - now), "backoff"
        if self._failures + in_flight + 1 >= self._max_failures:  # this guess could rotate the password
            rotation = self._last_forced + ROTATION_INTERVAL - now
            if rotation > wait:
                wait, why = rotation, "rotation_rate"
        return (wait, why) if wait > 0 else (0.0, "")

    @property
    def password(self) -> SessionPassword | None:
        """The current password; None once wiped."""
        return self._password

    @property
    def failures(self) -> int:
        """Wrong guesses against the current value."""
        return self._failures

    @property
    def rotations(self) -> int:
        return self._rotations

    def record_failure(self) -> bool:
        """Count one wrong guess; True when this one rotated the password."""
        if self._password is None:
            raise PasswordWipedError("the session password was wiped when the session ended")
        self._failures += 1
        self._total += 1
        self._last_failure = self._clock()
        if self._failures < self._max_failures:
            return False
        self.rotate()
        self._last_forced = self._last_failure
        return True

    def rotate(self) -> SessionPassword:
        """Replace the password now (old value wiped) and reset the failure count."""
        if self._password is None:
            raise PasswordWipedError("the session password was wiped when the session ended")
        new = self._generate()
        self._password.wipe()
        self._password = new
        self._failures = 0
        self._rotations += 1
        return new

    def wipe(self) -> None:
        """Wipe the current password for good (session ended). Idempotent."""
        if self._password is not None:
            self._password.wipe()
            self._password = None
        self._failures = 0

    def __repr__(self) -> str:
        return f"PasswordPolicy(failures={self._failures}, max_failures={self._max_failures}, wiped={self._password is None})"


class RedactingFilter(logging.Filter):
    """A logging filter that masks the value of every live SessionPassword in a record.

    Defence in depth: our code never logs a password, but a library might log a
    buffer that contains one. Attach it to handlers (a filter on a logger does
    not see its children's records): ``handler.addFilter(RedactingFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        secrets_now = [p._value.decode("utf-8", "replace") for p in list(_LIVE) if p._value is not None]
        if not secrets_now:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        cleaned = message
        for value in secrets_now:
            cleaned = cleaned.replace(value, MASK)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            exc_text = record.exc_text
            for value in secrets_now:
                exc_text = exc_text.replace(value, MASK)
            record.exc_text = exc_text
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
