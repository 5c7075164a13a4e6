"""Known-answer tests of the key schedule: labels, HKDF, transcript, and a whole handshake with pinned randomness.

The constants were recorded once from this implementation; any change to a
label, the transcript layout, the framing or the derivation shows up here as a
byte-for-byte mismatch (and would break interoperability between versions).
"""
from __future__ import annotations

import hashlib
import hmac

import nacl.bindings
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from spake2 import SPAKE2_A, SPAKE2_B

from agent.secure import keyschedule as ks
from agent.secure.handshake import AgentHandshake, Established, ViewerHandshake

SESSION = "123456789"
PASSWORD = "k3mx7q"


class FixedEntropy:
    """Deterministic stand-in for os.urandom: each call returns the next SHAKE-256 block of a seed."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.calls = 0

    def __call__(self, size: int) -> bytes:
        self.calls += 1
        return hashlib.shake_256(self.seed + self.calls.to_bytes(4, "big")).digest(size)


# Recorded once (see module docstring).
VIEWER_HELLO = bytes.fromhex(
    "0043010141273f536838eedce94ec4c693b4f28c6fe87bc548715472aa55ff06c7cdf4dba8c9dd7401478b10115bb56d07e04ee3373e2f"
    "9fbf906899007c8fe6167e53d97e")
AGENT_HELLO = bytes.fromhex(
    "0043010142460db24bb70e3b13b7feb18785cdd6aaab649b031e0357a89794131afd843f22d6dc80d92b52fd975ad53a7fd08ceccf093f"
    "bb942404d38c881beede0e8d7442")
VIEWER_CONFIRM = bytes.fromhex("00220102cc9dc16515765d80a6fc8cebe6cb4639a7ce96896fc208e4d5f24e11dfcb5f0f")
AGENT_CONFIRM = bytes.fromhex("002201020a2c71af0c793b1992caaefed66123f4c01bbf86f377eaf508f360441a135320")
SAFETY_CODE = "0633"
TRANSCRIPT = bytes.fromhex("321ab685ddfb32c5a46957fbe0f75c0d5aa80b366a129e2e45a5cd3984f4a09b")
SPAKE2_KEY = bytes.fromhex("697f273bf16fcd6762a9a65cb566623fcbf24cfd51df1815f7fa28c812a2abda")
X25519_SHARED = bytes.fromhex("c46a04d1cb66a58c11396c27541450fcfcb7dc25f780e501459d8734f5834d35")
KEY_VIEWER_TO_AGENT = bytes.fromhex("6829f229918288784b397cd6a75f328a0d742d0df9625b99cbb28390bacff071")
KEY_AGENT_TO_VIEWER = bytes.fromhex("bb5bd8c8e5dccc0e8c49310cb20ecc21adc019b2c50769bf4f52eae38da6b95c")
KEY_CONFIRM_VIEWER = bytes.fromhex("6e377fee326f6b147ab2b9ec4380d99d78c3266cdb8569fb0297cd6afac15ac3")
KEY_CONFIRM_AGENT = bytes.fromhex("253ab7f2bfe24d55b38ef69128cd01c42b242a5ca35940dd4bed96bbe7e614b5")
FIRST_VIEWER_RECORD = bytes.fromhex("c103448a80f446eb301aa4628fd4b2a835ccc3da9c57cc536a3c0af4c411")  # header varint(28 << 4 | DATA)
FIRST_AGENT_RECORD = bytes.fromhex("c103d0cab6880dc568426291288c338a19d4c36f4c9b752199b87977f08b")


def test_purpose_labels_are_pinned_and_distinct() -> None:
    labels = [ks.LABEL_KEY_VIEWER_TO_AGENT, ks.LABEL_KEY_AGENT_TO_VIEWER, ks.LABEL_CONFIRM_VIEWER,
              ks.LABEL_CONFIRM_AGENT, ks.LABEL_SAFETY_CODE, ks.LABEL_RATCHET]
    assert labels == [b"rejnet/v1:key:viewer->agent", b"rejnet/v1:key:agent->viewer", b"rejnet/v1:confirm:viewer",
                      b"rejnet/v1:confirm:agent", b"rejnet/v1:safety-code", b"rejnet/v1:ratchet"]
    assert len(set(labels)) == len(labels)
    assert ks.spake2_identities("123 456 789") == (b"rejnet/v1|viewer|123456789", b"rejnet/v1|agent|123456789")


def test_hkdf_helper_is_standard_hkdf_sha256() -> None:
    # RFC 5869, test case 1
    okm = ks.derive(bytes.fromhex("0b" * 22), bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
                    salt=bytes.fromhex("000102030405060708090a0b0c"), length=42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_derive_session_keys_known_answer() -> None:
    keys = ks.derive_session_keys(bytes(range(32)), bytes(range(32, 64)), hashlib.sha256(b"transcript").digest())
    assert keys.viewer_to_agent.hex() == "3c2d401d3b8266bedb5ad2722c2ad29f266a4b8ed3b591694305ac192005e76a"
    assert keys.agent_to_viewer.hex() == "bda6679775d88242843d14f327b5103722f1f682eef130a02c64b2e8cf6fbe60"
    assert keys.confirm_viewer.hex() == "0633dc128978889fb4f891b26a74119d155cfbca2c592a57d9e938675d4945f9"
    assert keys.confirm_agent.hex() == "47bdbe48cb5a2cd762f2704b61b6c9f48d3261ac0f2fc09501766b5427eeaf69"
    assert keys.safety_code == "1602"
    # each key is HKDF of both secrets with its own label, salted with the transcript
    ikm = bytes(range(64))
    assert keys.viewer_to_agent == ks.derive(ikm, ks.LABEL_KEY_VIEWER_TO_AGENT,
                                             salt=hashlib.sha256(b"transcript").digest())


def test_ratchet_known_answer() -> None:
    assert ks.ratchet(bytes(32)).hex() == "59ec8929c9090810a7f1850a8b4e1fee4a375e3bf3e9d237441efefa19010642"
    assert ks.ratchet(bytes(32)) == ks.derive(bytes(32), b"rejnet/v1:ratchet")


def test_transcript_hash_is_pinned_and_unambiguous() -> None:
    assert ks.transcript_hash(SESSION, [b"a", b"bc"]).hex() == (
        "4f1408df6458694b6f74bb3a3db525b95eb10940c9492f7ca0e49fd8e6d3d7fc")
    assert ks.transcript_hash(SESSION, [b"a", b"bc"]) != ks.transcript_hash(SESSION, [b"ab", b"c"])
    assert ks.transcript_hash(SESSION, [b"a"]) != ks.transcript_hash("123456780", [b"a"])
    assert ks.transcript_hash("123 456-789", [b"a"]) == ks.transcript_hash(SESSION, [b"a"])


@pytest.mark.parametrize("bad", ["", "12|34", "123.456", "ąćę", "1" * 65])
def test_session_id_must_be_plain_ascii(bad: str) -> None:
    with pytest.raises(ValueError):
        ks.canonical_session_id(bad)


def test_safety_code_is_four_digits() -> None:
    codes = {ks.derive_session_keys(bytes([i]) * 32, bytes(32), bytes(32)).safety_code for i in range(50)}
    assert all(len(code) == 4 and code.isdigit() for code in codes)
    assert len(codes) > 40


def test_session_keys_repr_hides_secrets() -> None:
    keys = ks.derive_session_keys(bytes(32), bytes(32), bytes(32))
    assert keys.viewer_to_agent.hex() not in repr(keys)
    assert repr(keys) == "SessionKeys(<secret>)"


def _pinned_handshake() -> tuple[Established, Established, list[bytes]]:
    viewer = ViewerHandshake(SESSION, PASSWORD, entropy=FixedEntropy(b"viewer"))
    agent = AgentHandshake(SESSION, PASSWORD, entropy=FixedEntropy(b"agent"))
    wire = [viewer.data_to_send(), agent.data_to_send()]
    agent.receive_data(wire[0])
    agent.next_event()
    viewer.receive_data(wire[1])
    viewer.next_event()
    wire.append(viewer.data_to_send())
    agent.receive_data(wire[2])
    agent_done = agent.next_event()
    wire.append(agent.data_to_send())
    viewer.receive_data(wire[3])
    viewer_done = viewer.next_event()
    assert isinstance(viewer_done, Established) and isinstance(agent_done, Established)
    return viewer_done, agent_done, wire


def test_handshake_known_answer_with_fixed_randomness() -> None:
    viewer_done, agent_done, wire = _pinned_handshake()
    assert wire == [VIEWER_HELLO, AGENT_HELLO, VIEWER_CONFIRM, AGENT_CONFIRM]
    assert viewer_done.safety_code == agent_done.safety_code == SAFETY_CODE
    assert viewer_done.channel.send_data(b"RFB 003.008\n") == FIRST_VIEWER_RECORD
    assert agent_done.channel.send_data(b"RFB 003.008\n") == FIRST_AGENT_RECORD


def test_handshake_keys_recomputed_independently() -> None:
    """Rebuild every secret from the pinned randomness with the raw libraries and check the pinned keys."""
    viewer_entropy, agent_entropy = FixedEntropy(b"viewer"), FixedEntropy(b"agent")
    viewer_x25519, agent_x25519 = viewer_entropy(32), agent_entropy(32)  # the handshake draws X25519 first
    id_viewer, id_agent = ks.spake2_identities(SESSION)
    side_a = SPAKE2_A(PASSWORD.encode(), idA=id_viewer, idB=id_agent, entropy_f=viewer_entropy)
    side_b = SPAKE2_B(PASSWORD.encode(), idA=id_viewer, idB=id_agent, entropy_f=agent_entropy)
    msg_a, msg_b = side_a.start(), side_b.start()
    assert VIEWER_HELLO[4:37] == msg_a and AGENT_HELLO[4:37] == msg_b
    assert VIEWER_HELLO[37:] == nacl.bindings.crypto_scalarmult_base(viewer_x25519)
    assert AGENT_HELLO[37:] == nacl.bindings.crypto_scalarmult_base(agent_x25519)
    spake_key = side_a.finish(msg_b)
    assert spake_key == side_b.finish(msg_a) == SPAKE2_KEY
    shared = nacl.bindings.crypto_scalarmult(viewer_x25519, AGENT_HELLO[37:])
    assert shared == nacl.bindings.crypto_scalarmult(agent_x25519, VIEWER_HELLO[37:]) == X25519_SHARED

    transcript = ks.transcript_hash(SESSION, [VIEWER_HELLO, AGENT_HELLO])
    assert transcript == TRANSCRIPT
    keys = ks.derive_session_keys(SPAKE2_KEY, X25519_SHARED, TRANSCRIPT)
    assert keys.viewer_to_agent == KEY_VIEWER_TO_AGENT
    assert keys.agent_to_viewer == KEY_AGENT_TO_VIEWER
    assert keys.confirm_viewer == KEY_CONFIRM_VIEWER
    assert keys.confirm_agent == KEY_CONFIRM_AGENT
    assert keys.safety_code == SAFETY_CODE

    # confirmation MACs on the wire are HMAC-SHA256(confirm key, transcript)
    assert VIEWER_CONFIRM[4:] == hmac.new(KEY_CONFIRM_VIEWER, TRANSCRIPT, hashlib.sha256).digest()
    assert AGENT_CONFIRM[4:] == hmac.new(KEY_CONFIRM_AGENT, TRANSCRIPT, hashlib.sha256).digest()
    # the first record of each direction: nonce = direction label || counter 0, header as associated data
    assert AESGCM(KEY_VIEWER_TO_AGENT).decrypt(b"V->A" + bytes(8), FIRST_VIEWER_RECORD[2:],
                                               FIRST_VIEWER_RECORD[:2]) == b"RFB 003.008\n"
    assert AESGCM(KEY_AGENT_TO_VIEWER).decrypt(b"A->V" + bytes(8), FIRST_AGENT_RECORD[2:],
                                               FIRST_AGENT_RECORD[:2]) == b"RFB 003.008\n"


def test_different_randomness_gives_different_keys() -> None:
    first = ViewerHandshake(SESSION, PASSWORD, entropy=FixedEntropy(b"one")).data_to_send()
    second = ViewerHandshake(SESSION, PASSWORD, entropy=FixedEntropy(b"two")).data_to_send()
    real = ViewerHandshake(SESSION, PASSWORD).data_to_send()
    assert len({first, second, real}) == 3
