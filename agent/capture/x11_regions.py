"""XFixes regions over python-xlib, which lacks them: enough to read back what X DAMAGE accumulated.

DamageSubtract can move the damage into a region ("parts") and FetchRegion
reads that region's rectangles in one round trip, so the capture loop learns
*where* the screen was drawn, not only *that* it was, and grabs just that.
"""
from __future__ import annotations

from typing import Any

from Xlib.protocol import rq, structs

# XFixes minor opcodes (xfixesproto: CreateRegion 5, FetchRegion 19)
_CREATE_REGION = 5
_FETCH_REGION = 19


class _CreateRegion(rq.Request):
    _request = rq.Struct(rq.Card8("opcode"), rq.Opcode(_CREATE_REGION), rq.RequestLength(),
                         rq.Card32("region"), rq.List("rectangles", structs.Rectangle))


class _FetchRegion(rq.ReplyRequest):
    _request = rq.Struct(rq.Card8("opcode"), rq.Opcode(_FETCH_REGION), rq.RequestLength(), rq.Card32("region"))
    _reply = rq.Struct(rq.ReplyCode(), rq.Pad(1), rq.Card16("sequence_number"), rq.ReplyLength(),
                       rq.Object("extents", structs.Rectangle), rq.Pad(16),
                       rq.List("rectangles", structs.Rectangle))


def create_region(xdisplay: Any) -> int:
    """A new, empty server-side region on ``xdisplay`` (an Xlib Display with XFIXES >= 2)."""
    region = xdisplay.display.allocate_resource_id()
    _CreateRegion(display=xdisplay.display, opcode=xdisplay.display.get_extension_major("XFIXES"),
                  region=region, rectangles=[])
    return region


def fetch_region(xdisplay: Any, region: int) -> list[tuple[int, int, int, int]]:
    """The rectangles ``(x, y, w, h)`` of ``region``, disjoint and y-x banded as the server keeps them."""
    reply = _FetchRegion(display=xdisplay.display, opcode=xdisplay.display.get_extension_major("XFIXES"),
                         region=region)
    return [(r.x, r.y, r.width, r.height) for r in reply.rectangles]
