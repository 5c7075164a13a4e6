"""Fake links for the sans-IO RFB server and client: drain, pump both ways, a connected pair; and PSNR."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from agent.rfb import messages as M
from agent.rfb.client import ClientState, RFBClient
from agent.rfb.server import RFBServer
from agent.sansio import NEED_DATA


def drain_events(conn: Any) -> list:
    out = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, M.ConnectionClosed):
            return out


def pump(server: Any, client: Any, *, chunk: Optional[int] = None, max_rounds: int = 10000) -> tuple[list, list]:
    """Move bytes both ways until neither side has anything to send; returns (server events, client events).

    ``chunk`` delivers the bytes in pieces of that size (1 = byte at a time).
    """
    server_events: list = []
    client_events: list = []
    for _ in range(max_rounds):
        to_client = server.data_to_send()
        to_server = client.data_to_send()
        if not to_client and not to_server:
            return server_events, client_events
        for data, conn, sink in ((to_client, client, client_events), (to_server, server, server_events)):
            step = chunk or max(len(data), 1)
            for i in range(0, len(data), step):
                conn.receive_data(data[i:i + step])
                sink += drain_events(conn)
    raise AssertionError("the peers kept talking")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    diff = a[..., :3].astype(np.float64) - b[..., :3].astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def connected_pair(width: int = 64, height: int = 48, **client_kw) -> tuple[RFBServer, RFBClient, list, list]:
    server = RFBServer(width, height, "pair")
    client = RFBClient(**client_kw)
    server_events, client_events = pump(server, client)
    assert client.state is ClientState.NORMAL
    return server, client, server_events, client_events
