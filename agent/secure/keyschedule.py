"""Key schedule of the secure channel (DESIGN §4.2): one HKDF helper, one label per purpose.

Every key the channel uses is derived here, from both handshake secrets
(SPAKE2 key || X25519 shared secret), salted with the transcript hash so that
any tampering with a handshake message yields unrelated keys and a failed key
confirmation. Labels name the purpose and direction of each key, so no key is
ever used for two jobs or in both directions.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PROTOCOL_LABEL = b"rejnet/v1"

LABEL_KEY_VIEWER_TO_AGENT = b"rejnet/v1:key:viewer->agent"
LABEL_KEY_AGENT_TO_VIEWER = b"rejnet/v1:key:agent->viewer"
LABEL_CONFIRM_VIEWER = b"rejnet/v1:confirm:viewer"
LABEL_CONFIRM_AGENT = b"rejnet/v1:confirm:agent"
LABEL_SAFETY_CODE = b"rejnet/v1:safety-code"
LABEL_RATCHET = b"rejnet/v1:ratchet"
LABEL_RESUME = b"rejnet/v1:resume"          # the resumption secret of a channel (agent.secure.resume)
LABEL_RESUME_ID = b"rejnet/v1:resume-id"    # its public handle, sent in the clear in RESUME

KEY_SIZE = 32  # AES-256 and HMAC-SHA256 keys
MAC_SIZE = 32
SAFETY_CODE_DIGITS = 4

_SESSION_ID_SEPARATORS = re.compile(r"[\s\-]+")
_SESSION_ID_CHARS = re.compile(r"[0-9A-Za-z]{1,64}")


def derive(secret: bytes, label: bytes, *, salt: bytes | None = None, length: int = KEY_SIZE) -> bytes:
    """HKDF-SHA256 expand of ``secret`` for one purpose; the only KDF entry point of the channel."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=label).derive(secret)


def ratchet(key: bytes) -> bytes:
    """The next epoch's key of one direction; the old key cannot be recovered from it."""
    return derive(key, LABEL_RATCHET)


def canonical_session_id(session_id: str) -> str:
    """The form bound into identities and the transcript, so "123 456 789" and "123456789" agree."""
    text = _SESSION_ID_SEPARATORS.sub("", session_id)
    if not _SESSION_ID_CHARS.fullmatch(text):
        raise ValueError("a session ID is 1 to 64 ASCII letters or digits (spaces and dashes ignored)")
    return text


def spake2_identities(session_id: str) -> tuple[bytes, bytes]:
    """SPAKE2 identities (side A = viewer, side B = agent) for one session."""
    sid = canonical_session_id(session_id).encode("ascii")
    return b"rejnet/v1|viewer|" + sid, b"rejnet/v1|agent|" + sid


def transcript_hash(session_id: str, messages: Iterable[bytes]) -> bytes:
    """SHA-256 over the protocol label, the session ID and every handshake message, in order.

    Each part is length-prefixed so no two different transcripts hash the same
    byte string.
    """
    h = hashlib.sha256()
    for part in (PROTOCOL_LABEL, canonical_session_id(session_id).encode("ascii"), *messages):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


@dataclass(frozen=True, repr=False, eq=False)
class SessionKeys:
    """Everything one handshake derives. Never logged: its repr hides the secrets."""

    viewer_to_agent: bytes
    agent_to_viewer: bytes
    confirm_viewer: bytes
    confirm_agent: bytes
    safety_code: str
    transcript: bytes
    resumption: bytes = b""  # secret a cut connection resumes with (never the password)

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"


def derive_session_keys(spake2_key: bytes, x25519_shared: bytes, transcript: bytes) -> SessionKeys:
    """Derive the direction keys, confirmation MAC keys and safety code from both secrets."""
    ikm = spake2_key + x25519_shared
    code_bytes = derive(ikm, LABEL_SAFETY_CODE, salt=transcript, length=8)
    code = int.from_bytes(code_bytes, "big") % 10**SAFETY_CODE_DIGITS
    return SessionKeys(
        viewer_to_agent=derive(ikm, LABEL_KEY_VIEWER_TO_AGENT, salt=transcript),
        agent_to_viewer=derive(ikm, LABEL_KEY_AGENT_TO_VIEWER, salt=transcript),
        confirm_viewer=derive(ikm, LABEL_CONFIRM_VIEWER, salt=transcript),
        confirm_agent=derive(ikm, LABEL_CONFIRM_AGENT, salt=transcript),
        safety_code=f"{code:0{SAFETY_CODE_DIGITS}d}",
        transcript=transcript,
        resumption=derive(ikm, LABEL_RESUME, salt=transcript),
    )


def resume_id(resumption_secret: bytes) -> bytes:
    """The public 16-byte handle of a resumption secret: names it without revealing it."""
    return derive(resumption_secret, LABEL_RESUME_ID, length=16)


def confirmation_mac(key: bytes, transcript: bytes) -> bytes:
    """Key-confirmation MAC: proves knowledge of the derived key (hence the password) for this transcript."""
    return hmac.new(key, transcript, hashlib.sha256).digest()


def mac_matches(expected: bytes, received: bytes) -> bool:
    """Constant-time comparison of a confirmation MAC."""
    return hmac.compare_digest(expected, received)
