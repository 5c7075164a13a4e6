"""Hazardous core: AES-256-GCM with implicit nonces. The only module that builds a nonce.

Record = ``header | ciphertext+tag``, where header = varint(len << 4 | type) (agent.secure.varint:
LEB128, 2 bytes for a record of up to 1,023 bytes, at most 3), ``len`` = length of ciphertext+tag;
the header, as sent, is the associated data. Nonce = 4-byte direction label || 8-byte record counter (big endian). The
counter is never sent: the receiver uses the one it expects, so a replayed,
reordered, dropped or reflected record simply fails its tag check. Each
direction has its own key and label; every RATCHET_INTERVAL records its key is
replaced by HKDF(old key, "rejnet/v1:ratchet") while the counter continues, and
no direction ever goes past MAX_RECORDS, far below where the 64-bit counter
could wrap.

Use ``records.Channel``; nothing outside ``agent.secure`` should import this.
"""
from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.secure.errors import CounterExhaustedError, RecordAuthenticationError
from agent.secure.keyschedule import KEY_SIZE, ratchet
from agent.secure.varint import encode as _varint

LABEL_VIEWER_TO_AGENT = b"V->A"
LABEL_AGENT_TO_VIEWER = b"A->V"
TAG_SIZE = 16
RATCHET_INTERVAL = 1 << 24
MAX_RECORDS = 1 << 48
_RATCHET_MASK = RATCHET_INTERVAL - 1
_NONCE = struct.Struct(">4sQ")  # direction label, record counter
TYPE_BITS = 4  # the record type is the header varint's low 4 bits; the length is the rest
MAX_HEADER = 3  # header bytes at most: 21 bits hold a length up to 131,071, above any record's


def record_header(length: int, rtype: int) -> bytes:
    """The header of a record whose ciphertext+tag is ``length`` bytes (the AEAD's associated data)."""
    if not 0 <= rtype < 1 << TYPE_BITS:
        raise ValueError("a record type has 4 bits")
    return _varint(length << TYPE_BITS | rtype)


class _Direction:
    """Key, label and counter of one direction of one channel."""

    __slots__ = ("_aead", "_key", "_label", "_counter")

    def __init__(self, key: bytes, label: bytes, *, _counter: int = 0) -> None:
        # _counter lets tests start near a ratchet or exhaustion boundary; ``key``
        # is then the key of that counter's epoch.
        if len(key) != KEY_SIZE or len(label) != 4:
            raise ValueError("a direction needs a 32-byte key and a 4-byte label")
        if not 0 <= _counter <= MAX_RECORDS:
            raise ValueError("record counter out of range")
        self._key = key
        self._aead = AESGCM(key)
        self._label = label
        self._counter = _counter

    @property
    def counter(self) -> int:
        """Number of the next record (records done so far in this direction)."""
        return self._counter

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self._label!r}, counter={self._counter})"

    def _ratchet(self) -> None:
        self._key = ratchet(self._key)
        self._aead = AESGCM(self._key)


def _exhausted() -> CounterExhaustedError:
    return CounterExhaustedError(
        f"{MAX_RECORDS} records in one direction: the channel closes before any nonce could repeat; reconnect")


class Sealer(_Direction):
    """Encrypts the records this end sends, strictly in counter order."""

    __slots__ = ()

    def seal(self, rtype: int, plaintext: bytes | memoryview) -> bytes:
        """The next whole record: header || ciphertext+tag, the header authenticated as associated data."""
        counter = self._counter
        if counter >= MAX_RECORDS:
            raise _exhausted()
        header = record_header(len(plaintext) + TAG_SIZE, rtype)
        record = header + self._aead.encrypt(_NONCE.pack(self._label, counter), plaintext, header)
        counter += 1
        self._counter = counter
        if not counter & _RATCHET_MASK:
            self._ratchet()
        return record


class Opener(_Direction):
    """Checks and decrypts the records the peer sends, strictly in counter order."""

    __slots__ = ()

    def open(self, header: bytes | bytearray, ciphertext: bytes | memoryview) -> bytes:
        """Plaintext of the next record, only once its tag has verified."""
        counter = self._counter
        if counter >= MAX_RECORDS:
            raise _exhausted()
        try:
            plaintext = self._aead.decrypt(_NONCE.pack(self._label, counter), ciphertext, header)
        except InvalidTag:
            raise RecordAuthenticationError(
                f"record {counter} is not authentic (altered, replayed, reordered, dropped or reflected); "
                "the channel is closed") from None
        counter += 1
        self._counter = counter
        if not counter & _RATCHET_MASK:
            self._ratchet()
        return plaintext
