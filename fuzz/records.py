"""Fuzz the record layer after a completed handshake (agent/secure/records.py).

The attacker here holds the keys (a hostile agent or viewer after PAKE), so
records are sealed properly and the fuzzer reaches what lies behind the AEAD:
record types, payload sizes, ACK arithmetic, ZDATA inflation, CLOSE reasons.
Invariant: the receiver yields events or fails with a ChannelError
(RemoteProtocolError for malformed content); nothing else, and it never holds
more than its bounds. Run: python fuzz/records.py -runs=1000000
"""
import sys

import atheris

with atheris.instrument_imports():
    from agent.sansio import NEED_DATA
    from agent.secure.errors import ChannelError
    from agent.secure.keyschedule import derive_session_keys
    from agent.secure.records import MAX_PLAINTEXT, Channel, Closed, Role

KEYS = derive_session_keys(b"s" * 32, b"x" * 32, b"t" * 32)


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    agreed = fdp.ConsumeBool()  # both ends agreed on ZDATA in the handshake, or not (then ZDATA is refused)
    hostile = Channel(Role.VIEWER, KEYS, compression=agreed)
    target = Channel(Role.AGENT, KEYS, compression=agreed)
    if agreed:
        target.enable_compression()
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 8)):
            rtype = fdp.ConsumeIntInRange(0, 15)  # the header's 4 type bits
            payload = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, min(MAX_PLAINTEXT, 4096)))
            wire = hostile._record(rtype, payload)  # sealed as a key holder would
            if fdp.ConsumeBool():
                wire = wire[: fdp.ConsumeIntInRange(0, len(wire))]  # and cut anywhere
            if wire:  # b"" would be EOF
                target.receive_data(wire)
            while True:
                event = target.next_event()
                if event is NEED_DATA or isinstance(event, Closed):
                    break
        target.receive_data(b"")
        target.next_event()
    except ChannelError:
        return


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
