"""Fuzz the control socket's line parser on both ends (agent/control/protocol.py).

The agent side must turn any bytes into requests or BadRequest events (an
error reply, never an exception); the client side into replies and events, or
RemoteProtocolError. Run: python fuzz/control_line.py -runs=1000000
"""
import sys

import atheris

with atheris.instrument_imports():
    from agent.control.protocol import CLOSED, ClientConnection, ServerConnection
    from agent.sansio import NEED_DATA, RemoteProtocolError


def _drain(conn) -> None:
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is CLOSED:
            return


def TestOneInput(data: bytes) -> None:
    server = ServerConnection(max_line=4096)
    cut = len(data) // 3
    for chunk in [c for c in (data[:cut], data[cut:]) if c] + [b""]:  # b"" is EOF, once, last
        server.receive_data(chunk)
        _drain(server)  # any exception here is a bug: the agent must answer, not die
    client = ClientConnection()
    try:
        for chunk in [c for c in (data,) if c] + [b""]:
            client.receive_data(chunk)
            _drain(client)
    except RemoteProtocolError:
        return


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
