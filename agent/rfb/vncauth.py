"""VNC Authentication (RFC 6143 §7.2.2): DES of a 16-byte challenge keyed by the password.

The quirk every VNC implementation shares: each byte of the 8-byte key (the
password truncated or zero-padded to 8 bytes) has its bits reversed before it
is used as a DES key. This scheme is weak (56-bit DES, 8 significant password
characters) and we only offer it on loopback (``rejnet-agent rfb``); the
remote path uses the PAKE-protected channel instead.

Single DES comes from cryptography's "decrepit" TripleDES with the key
repeated three times (K, K, K is single DES, and 24-byte keys raise no
deprecation warning).
"""
from __future__ import annotations

import hmac
import os

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

CHALLENGE_SIZE = 16
KEY_SIZE = 8

_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _des_key(password: str) -> bytes:
    # Latin-1 like every VNC viewer's password box; other characters cannot be typed there.
    raw = password.encode("latin-1", errors="replace")[:KEY_SIZE].ljust(KEY_SIZE, b"\0")
    return raw.translate(_REVERSED)


def make_challenge() -> bytes:
    """A fresh random challenge; never reuse one (a replayed response would pass)."""
    return os.urandom(CHALLENGE_SIZE)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The 16-byte response a client sends for ``challenge``."""
    if len(challenge) != CHALLENGE_SIZE:
        raise ValueError(f"a VNC challenge is {CHALLENGE_SIZE} bytes, got {len(challenge)}")
    key = _des_key(password)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()


def check_response(password: str, challenge: bytes, response: bytes) -> bool:
    """Constant-time check of a client's response."""
    if len(response) != CHALLENGE_SIZE:
        return False
    return hmac.compare_digest(vnc_auth_response(password, challenge), response)


def password_truncated(password: str) -> bool:
    """True when characters past the 8th would be silently ignored by VNC Authentication."""
    return len(password.encode("latin-1", errors="replace")) > KEY_SIZE
