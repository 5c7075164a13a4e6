"""Sans-IO: the local VNC viewer's bytes, with its keys and pointer moves taken out while the link is cut,
and told apart from the viewer's own traffic.

The session channel replays everything sent during a cut once it resumes, so
a technician typing blind into a frozen picture would have those keys pressed
on the customer's PC seconds later. The bridge feeds the local viewer's bytes
through here and drops KeyEvent and PointerEvent while it is reconnecting;
everything else (update requests, encodings, clipboard) still goes through, so
the RFB stream stays well formed. The agent released every held key and button
when the cut began, so a key-up dropped here leaves nothing pressed.

``user_input`` says whether what a feed returned carries a person's input or
only what the viewer sends by itself (update requests, fences, its encodings
and pixel format): only input keeps the channel's chaff going (agent.secure.pacing).

Requests that stand: a viewer asks for the next update as soon as it has one,
and each request would cost the customer's PC a wake-up to read it, and a
record up the channel. When the agent has said it knows standing requests
(``standing()`` true when the viewer's SetEncodings passes), the filter adds
C.ENC_STANDING_REQUEST to that SetEncodings; after the next request goes on,
the agent sends every change as it comes (agent.service.updater) and the
filter keeps the viewer's incremental requests (``requests_kept``): the
updates they ask for come anyway. Full requests (a viewer that wants the
whole screen again) always go on.
"""
from __future__ import annotations

from typing import Callable

from agent.rfb import constants as C
from agent.rfb.client_messages import read_client_message, write_set_encodings
from agent.rfb.messages import (MAX_ENCODINGS, EnableContinuousUpdates, Fence, FramebufferUpdateRequest, KeyEvent,
                                PointerEvent, SetEncodings, SetPixelFormat)
from agent.sansio import RemoteProtocolError

_VERSION_LENGTH = 12
_VIEWERS_OWN = (FramebufferUpdateRequest, SetEncodings, SetPixelFormat, EnableContinuousUpdates, Fence)
"""Messages a viewer sends by itself, not a person's input: they start no chaff (agent.secure.pacing)."""


class InputFilter:
    """Feed the local viewer's bytes with ``feed(data, drop_input)``; forward what it returns."""

    def __init__(self, standing: Callable[[], bool] | None = None) -> None:
        self._pending = bytearray()
        self._handshake_left: int | None = None  # known once the ProtocolVersion is read
        self._passthrough = False
        self._standing = standing  # whether the agent knows standing requests (asked at each SetEncodings)
        self._offered = False  # the last SetEncodings passed on offered ENC_STANDING_REQUEST
        self._stands = False  # ...and a request went on since: the agent sends changes as they come
        self.dropped = 0  # input events held back during cuts
        self.requests_kept = 0  # incremental requests not passed on: a standing request covers them
        self.user_input = False  # what the last feed() returned carries a person's input (keys, pointer, clipboard)

    def feed(self, data: bytes, drop_input: bool) -> bytes:
        self.user_input = False
        if self._passthrough:
            self.user_input = bool(data)  # unparsed: taken for input
            return data
        self._pending += data
        out = bytearray()
        if not self._skip_handshake(out):
            return bytes(out)
        view = memoryview(self._pending)
        start = 0
        try:
            while start < len(view):
                parsed = read_client_message(view[start:])
                if parsed is None:
                    break
                message, size = parsed
                kind = type(message)
                if drop_input and kind in (KeyEvent, PointerEvent):
                    self.dropped += 1
                elif kind is FramebufferUpdateRequest and self._stands and message.incremental:  # type: ignore[attr-defined]
                    self.requests_kept += 1
                elif kind is SetEncodings and self._standing is not None:
                    out += self._set_encodings(message)  # type: ignore[arg-type]
                else:
                    out += view[start:start + size]
                    self.user_input = self.user_input or not isinstance(message, _VIEWERS_OWN)
                    if kind is FramebufferUpdateRequest and self._offered:
                        self._stands = True
                start += size
        except RemoteProtocolError:
            # Not ours to judge: the agent's RFB server refuses it with a clear reason.
            self._passthrough = True
            self.user_input = self.user_input or start < len(view)
            out += view[start:]
            start = len(view)
        finally:
            view.release()
        del self._pending[:start]
        return bytes(out)

    def _set_encodings(self, message: SetEncodings) -> bytes:
        """The viewer's SetEncodings, with ENC_STANDING_REQUEST added if the agent knows it (and it fits)."""
        encodings = message.encodings
        offer = bool(self._standing and self._standing()) and len(encodings) < MAX_ENCODINGS
        if offer and C.ENC_STANDING_REQUEST not in encodings:
            encodings += (C.ENC_STANDING_REQUEST,)
        elif not offer:  # (a viewer cannot offer it on its own: it would not know its requests are kept)
            encodings = tuple(e for e in encodings if e != C.ENC_STANDING_REQUEST)
        self._offered = offer
        self._stands = self._stands and offer  # the agent keeps a standing request while it is offered
        return write_set_encodings(encodings)

    def _skip_handshake(self, out: bytearray) -> bool:
        """Pass the client's handshake bytes through untouched; True once it is over."""
        if self._handshake_left is None:
            if len(self._pending) < _VERSION_LENGTH:
                return False
            # 3.3: the server picks security; the client sends only ClientInit. 3.7+: a security type too.
            self._handshake_left = _VERSION_LENGTH + (1 if bytes(self._pending[:12]) == b"RFB 003.003\n" else 2)
        take = min(self._handshake_left, len(self._pending))
        out += self._pending[:take]
        del self._pending[:take]
        self._handshake_left -= take
        return self._handshake_left == 0
