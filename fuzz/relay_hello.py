"""Fuzz the relay's first line from a client: the line reader and the hello parser (agent/relay/protocol.py).

Invariant: bytes from the network produce hellos or raise RemoteProtocolError
(RelayProtocolError is one), nothing else. Run: python fuzz/relay_hello.py -runs=1000000
"""
import sys

import atheris

with atheris.instrument_imports():
    from agent.relay import protocol as p
    from agent.sansio import RemoteProtocolError


def TestOneInput(data: bytes) -> None:
    reader = p.LineReader()
    try:
        for chunk in (data[: len(data) // 2], data[len(data) // 2:]):
            reader.receive_data(chunk)
            while (line := reader.next_line()) is not None:
                for parse in (p.parse_hello, p.parse_reply):  # the relay reads hellos, clients read replies
                    try:
                        parse(line)
                    except RemoteProtocolError:
                        pass
    except RemoteProtocolError:  # the line reader refuses an over-long line
        return


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
