"""Who may try the password, when, and for how long: the agent's side of a new viewer connection.

A mixin of ``Agent`` (agent/session/agent.py), split off because it is one job
(issue #11 A). Anyone who knows the 9-digit ID can make the relay hand the
agent a connection, so none of them may hold the session:

* the viewer's first handshake message must arrive within ``PREAUTH_TIMEOUT``
  (the technician's client sends it at once) and its whole PAKE must be done
  within ``PAKE_TIMEOUT``; a silent or stalled peer costs a slot for that
  long, never counts as a guess and never blocks anyone else;
* several handshakes run side by side (``lifecycle.MAX_PENDING_HANDSHAKES``,
  the relay hands out several tickets per session too): the first to prove
  the password wins and every other one is closed;
* guesses are throttled per session (``password.PasswordPolicy.retry_after``:
  back-off growing with wrong guesses across password values, and at most one
  rotation caused by wrong guesses per ``ROTATION_INTERVAL``); a handshake
  asked for while throttled is closed before the PAKE, uncounted, and the
  launcher is told once per episode (``guessing_throttled`` on the control
  socket, with ``retry_after`` seconds and the reason).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.rfb import constants as C
from agent.session import lifecycle as lc

log = logging.getLogger(__name__)

PREAUTH_TIMEOUT = 5.0
"""Seconds a new connection has to send its first handshake message. The technician's client sends it
the moment the relay pairs it, so 5 s is ample even on a slow link, and short enough that a stranger's
silent connection is gone long before the technician gives up."""

PAKE_TIMEOUT = 10.0
"""Seconds for the rest of the PAKE once the HELLO is in: one round trip for the viewer's CONFIRM, plus
the failure delay; a HELLO followed by silence holds one of the parallel slots no longer than this."""

HANDSHAKE_TIMEOUT = 30.0  # a RESUME (agent.session.resuming) proves the channel's secret; its own deadline
# The viewer sends only small requests and input, and nothing flow-controls on our ACKs of them:
# acknowledge lazily, so a typing session is not one ACK record down the customer's link per keystroke.
VIEWER_ACK_DELAY = 1.0


class AdmittingViewer:
    """Mixin: needs the Agent's machine, config, service, _handshakes, _throttle_told, _session, _channel,
    flow, _apply, _publish, _resume_attempt, _session_message, _stream_opened, _transport_ended, _report_link."""

    machine: Any
    config: Any
    service: Any
    _handshakes: dict[int, asyncio.StreamWriter]
    _throttle_told: str

    def _admit_guess(self) -> bool:
        """May a new handshake (one password guess) start now? Tells the launcher once when not."""
        wait, why = self.machine.retry_after()
        if wait <= 0:
            self._throttle_told = ""
            return True
        if self._throttle_told != why:
            self._throttle_told = why
            self._publish({"event": "guessing_throttled", "reason": why,  # type: ignore[attr-defined]
                           "retry_after": round(wait, 1), "failures": self.machine.status()["failed_attempts"]})
        log.info("refused a password attempt for %.1f s more (%s)", wait, why)
        return False

    async def _viewer_attempt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        from agent.net import close_stream
        from agent.secure.handshake import Kind, peek_kind
        from agent.secure.resume_io import peek_first_message

        try:
            first = await peek_first_message(reader, PREAUTH_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            await close_stream(writer)
            return
        except asyncio.CancelledError:  # the agent is closing: a silent peer's connection goes with it
            writer.close()
            raise
        if peek_kind(first) is Kind.RESUME:
            await self._resume_attempt(reader, writer, first)  # type: ignore[attr-defined]
            return
        if not self.machine.can_accept_viewer or not self._admit_guess():
            await close_stream(writer)
            return
        self._apply(lc.ViewerArrived(peer))  # type: ignore[attr-defined]
        attempt = self.machine.attempt
        self._handshakes[attempt] = writer
        try:
            await self._authenticate(reader, writer, first, attempt)
        finally:
            self._handshakes.pop(attempt, None)

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes,
                            attempt: int) -> None:
        from agent.net import close_stream
        from agent.secure.errors import AuthFailedError, ChannelError
        from agent.secure.session_channel import SessionChannel
        from agent.secure.stream import accept_agent
        from agent.session.channel import ViewerChannel

        password = self.machine.password
        session_id = self.machine.session_id
        if password is None or session_id is None:
            await close_stream(writer)
            return
        try:
            # A wrong password is counted the moment it is known (on_failure), before the failure delay
            # and the FAILED write: a viewer that resets the connection then cannot dodge the count.
            stream = await accept_agent(reader, writer, session_id, password.reveal(), timeout=PAKE_TIMEOUT,
                                        failure_delay=self.config.auth_failure_delay, ack_delay=VIEWER_ACK_DELAY,
                                        compress=self.config.compress, first=first,
                                        on_failure=lambda: self._apply(lc.AuthFailed(attempt=attempt)))  # type: ignore[attr-defined]
        except AuthFailedError:
            return  # already counted by on_failure
        except (ChannelError, asyncio.TimeoutError, ConnectionError, OSError) as exc:
            self._apply(lc.ViewerLeft(reason=f"handshake failed: {exc}", attempt=attempt))  # type: ignore[attr-defined]
            return
        if not self.machine.pending(attempt):
            await stream.close("session is no longer waiting for this viewer")
            return
        # The first to prove the password wins: every other handshake still running is closed.
        for other, other_writer in list(self._handshakes.items()):
            if other != attempt:
                other_writer.close()
        # No await from here on: the channel watches the stream before anything can arrive on it.
        session = SessionChannel(stream, "agent", on_message=self._session_message,  # type: ignore[attr-defined]
                                 on_open=self._stream_opened,  # type: ignore[attr-defined]
                                 on_transport_end=lambda cut: self._transport_ended(session, attempt, cut))  # type: ignore[attr-defined]
        self._session = session
        # before any RFB stream opens: the viewer's bridge may then let the technician's requests stand
        session.send_message({"type": C.RFB_MESSAGE, "accepts": [C.STANDING_REQUEST_FEATURE]})
        self._channel = ViewerChannel(session, self.service, report=self._report_link,  # type: ignore[attr-defined]
                                      on_end=lambda channel: None)
        self.flow = self._channel.flow
        self._publish({"event": "safety_code", "code": stream.safety_code})  # type: ignore[attr-defined]
        self._apply(lc.AuthSucceeded(attempt=attempt))  # type: ignore[attr-defined]
