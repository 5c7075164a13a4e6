"""Serving the screen: the capture loop, each RFB connection's I/O and its updater (asyncio).

``RFBService`` is what the session and ``rejnet-agent rfb`` run: one capture
loop feeding every connection; each connection pulls updates through its own
tracker and encode manager.
"""
from agent.service.rfb_service import RFBService

__all__ = ["RFBService"]
