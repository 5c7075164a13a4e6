"""Fuzz the RFB server's reader of client messages (agent/rfb/server.py), past the handshake.

A viewer is untrusted input to the agent. Invariant: bytes produce events or
raise RemoteProtocolError; never another exception, never an allocation sized
by the peer beyond our bounds. Run: python fuzz/rfb_server.py -runs=1000000
"""
import sys

import atheris

with atheris.instrument_imports():
    from agent.rfb import messages as M
    from agent.rfb.server import RFBServer
    from agent.sansio import NEED_DATA, RemoteProtocolError

# A viewer's opening: version 3.8, security type None, ClientInit (shared).
HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x01"


def TestOneInput(data: bytes) -> None:
    server = RFBServer(64, 48, "fuzz")
    server.data_to_send()
    try:
        pieces = [HANDSHAKE] + [c for c in (data[: len(data) // 2], data[len(data) // 2:]) if c] + [b""]
        for chunk in pieces:  # b"" is EOF, once, last
            server.receive_data(chunk)
            while True:
                event = server.next_event()
                if event is NEED_DATA or isinstance(event, M.ConnectionClosed):
                    break
            server.data_to_send()
    except RemoteProtocolError:
        return


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
