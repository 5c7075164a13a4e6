"""RFB handshake bytes (RFC 6143 §7.1, §7.3): ProtocolVersion, security, ClientInit and ServerInit.

Readers and writers for both sides, in the order the messages flow; the
readers follow the convention in agent.rfb.wire. Which one applies when is the
business of the state tables in agent.rfb.server and agent.rfb.client.
"""
from __future__ import annotations

import struct
from typing import Optional, Sequence, Tuple

from agent.rfb import constants as C
from agent.rfb import vncauth
from agent.rfb.messages import (
    MAX_NAME,
    MAX_REASON,
    SECURITY_RESULT_FAILED,
    SECURITY_RESULT_OK,
    AuthenticationFailed,
    ClientInit,
    ConnectionClosed,
    ProtocolVersion,
    SecurityType,
    ServerInit,
    VncAuthChallenge,
    VncAuthResponse,
)
from agent.rfb.pixelformat import PixelFormat, PixelFormatError
from agent.rfb.wire import U8, U32, check_bound, need, read_string, write_string
from agent.sansio import RemoteProtocolError

_SERVER_INIT = struct.Struct(">HH16sI")


# ---------------------------------------------------------------- ProtocolVersion (both ways)

def write_version(major: int, minor: int) -> bytes:
    return b"RFB %03d.%03d\n" % (major, minor)


def read_version(view: memoryview) -> Optional[Tuple[ProtocolVersion, int]]:
    """ProtocolVersion: exactly b"RFB xxx.yyy\\n" (12 bytes)."""
    if not need(view, 12):
        # Refuse early when the prefix is already wrong: garbage should not wait for 12 bytes.
        if bytes(view[:4]) != b"RFB "[:len(view[:4])]:
            raise RemoteProtocolError("not an RFB protocol version message")
        return None
    raw = bytes(view[:12])
    if raw[:4] != b"RFB ":
        raise RemoteProtocolError(f"not an RFB protocol version message: {raw!r}")
    if raw[7:8] != b"." or raw[11:12] != b"\n" or not (raw[4:7].isdigit() and raw[8:11].isdigit()):
        raise RemoteProtocolError(f"malformed protocol version {raw!r}")
    return ProtocolVersion(int(raw[4:7]), int(raw[8:11])), 12


# ---------------------------------------------------------------- security types

def write_security_types(types: Sequence[int]) -> bytes:
    """3.7+, server: u8 count, then one u8 per type."""
    return U8.pack(len(types)) + bytes(types)


def write_security_failure(reason: str) -> bytes:
    """3.7+, server: a zero count then a reason: the server refuses before any security type."""
    return U8.pack(0) + write_string(reason.encode())


def read_security_types(view: memoryview) -> Optional[Tuple[object, int]]:
    """Returns (tuple of types, n) or (ConnectionClosed(reason), n) for a zero count."""
    if not need(view, 1):
        return None
    count = view[0]
    if count == 0:
        got = read_string(view, 1, MAX_REASON, "failure reason")
        if got is None:
            return None
        return ConnectionClosed(got[0].decode(errors="replace")), got[1]
    if not need(view, 1 + count):
        return None
    return tuple(view[1:1 + count]), 1 + count


def write_security_type(sec_type: int) -> bytes:
    """3.7+, client: the u8 type it picked from the server's list."""
    return U8.pack(sec_type)


def read_security_type(view: memoryview) -> Optional[Tuple[SecurityType, int]]:
    if not need(view, 1):
        return None
    return SecurityType(view[0]), 1


def write_security_type_33(sec_type: int) -> bytes:
    """3.3, server: the server decides; a u32 type (0 = failure followed by a reason)."""
    return U32.pack(sec_type)


def read_security_type_33(view: memoryview) -> Optional[Tuple[object, int]]:
    if not need(view, 4):
        return None
    (sec_type,) = U32.unpack_from(view, 0)
    if sec_type == C.SEC_INVALID:
        got = read_string(view, 4, MAX_REASON, "failure reason")
        if got is None:
            return None
        return ConnectionClosed(got[0].decode(errors="replace")), got[1]
    return sec_type, 4


# ---------------------------------------------------------------- VNC Authentication (16 bytes each way)

def read_vnc_challenge(view: memoryview) -> Optional[Tuple[VncAuthChallenge, int]]:
    n = vncauth.CHALLENGE_SIZE
    return (VncAuthChallenge(bytes(view[:n])), n) if need(view, n) else None


def read_vnc_response(view: memoryview) -> Optional[Tuple[VncAuthResponse, int]]:
    n = vncauth.CHALLENGE_SIZE
    return (VncAuthResponse(bytes(view[:n])), n) if need(view, n) else None


# ---------------------------------------------------------------- SecurityResult

def write_security_result(ok: bool, reason: Optional[str] = None) -> bytes:
    """SecurityResult; a reason string follows a failure in 3.8 only (pass None before 3.8)."""
    if ok:
        return U32.pack(SECURITY_RESULT_OK)
    out = U32.pack(SECURITY_RESULT_FAILED)
    if reason is not None:
        out += write_string(reason.encode())
    return out


def read_security_result(view: memoryview, with_reason: bool) -> Optional[Tuple[object, int]]:
    """Returns (True, n) on success, (AuthenticationFailed, n) on failure."""
    if not need(view, 4):
        return None
    (status,) = U32.unpack_from(view, 0)
    if status == SECURITY_RESULT_OK:
        return True, 4
    if not with_reason:
        return AuthenticationFailed("authentication failed"), 4
    got = read_string(view, 4, MAX_REASON, "failure reason")
    if got is None:
        return None
    return AuthenticationFailed(got[0].decode(errors="replace") or "authentication failed"), got[1]


# ---------------------------------------------------------------- initialisation

def write_client_init(shared: bool) -> bytes:
    return U8.pack(1 if shared else 0)


def read_client_init(view: memoryview) -> Optional[Tuple[ClientInit, int]]:
    if not need(view, 1):
        return None
    return ClientInit(view[0] != 0), 1


def write_server_init(width: int, height: int, pf: PixelFormat, name: str) -> bytes:
    raw = name.encode()
    return _SERVER_INIT.pack(width, height, pf.pack(), len(raw)) + raw


def read_server_init(view: memoryview) -> Optional[Tuple[ServerInit, int]]:
    if not need(view, _SERVER_INIT.size):
        return None
    width, height, pf_raw, name_len = _SERVER_INIT.unpack_from(view, 0)
    check_bound("desktop name", name_len, MAX_NAME)
    end = _SERVER_INIT.size + name_len
    if not need(view, end):
        return None
    try:
        pf = PixelFormat.unpack(pf_raw)
    except PixelFormatError as exc:  # pragma: no cover - 16 bytes always unpack
        raise RemoteProtocolError(str(exc)) from None
    name = bytes(view[_SERVER_INIT.size:end]).decode(errors="replace")
    return ServerInit(width, height, name, pf), end
