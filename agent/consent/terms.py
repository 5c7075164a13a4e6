"""The service terms the customer consents to, shipped with the package.

Consent is recorded against a terms version *and* the SHA-256 of the exact
bytes shown, so a ledger row proves which text was agreed to even if a file
of the same name later changes. The digest is over the file's bytes as
packaged (UTF-8), the same bytes ``rejnet-agent ctl consent --terms FILE``
hashes.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

from agent.errors import UsageError

CURRENT_VERSION = "pomoc-zdalna-v1"
VERSION_MAX = 64
_VERSION = re.compile(r"[a-z][a-z0-9.-]{0,%d}" % (VERSION_MAX - 1))  # also keeps a name from being a path


class TermsError(UsageError):
    """The requested terms version is not packaged with this agent; pick one of the versions it lists."""


@dataclass(frozen=True)
class Terms:
    version: str
    text: str
    sha256: str


def is_version_name(name: object) -> bool:
    """True for a well-formed terms version name such as ``pomoc-zdalna-v1``."""
    return isinstance(name, str) and _VERSION.fullmatch(name) is not None


def terms_sha256(data: bytes) -> str:
    """Hex SHA-256 of terms bytes, as recorded in the ledger and sent with ``consent``."""
    return hashlib.sha256(data).hexdigest()


def known_versions() -> list[str]:
    """Versions of the terms packaged with this agent, sorted."""
    folder = resources.files("agent.consent").joinpath("texts")
    names = (entry.name for entry in folder.iterdir() if entry.name.endswith(".txt"))
    return sorted(name[:-4] for name in names if is_version_name(name[:-4]))


def load_terms(version: str = CURRENT_VERSION) -> Terms:
    """The packaged terms of ``version``, with their digest; TermsError for an unknown version."""
    if not is_version_name(version) or version not in known_versions():
        raise TermsError(f"unknown terms version {version!r}; this agent ships: {', '.join(known_versions())}")
    data = resources.files("agent.consent").joinpath("texts", f"{version}.txt").read_bytes()
    return Terms(version=version, text=data.decode("utf-8"), sha256=terms_sha256(data))


def is_packaged(version: str, sha256: str) -> bool:
    """True when ``sha256`` is the digest of the packaged terms ``version`` (what a consent must match)."""
    try:
        return load_terms(version).sha256 == sha256.lower()
    except TermsError:
        return False
