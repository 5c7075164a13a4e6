"""The session's side of a resumable viewer channel: resume, cut, give up, and the streams inside.

A mixin of ``Agent`` (agent/session/agent.py), split off because it is one job:
an authenticated viewer's SessionChannel (agent.secure.session_channel) outlives
its TCP connection. A cut feeds ``PathLost`` (input off, held keys released, the
launcher told ``reconnecting``); a RESUME on a new connection, proved with the
channel's resumption secret (never the password), continues the same channel and
feeds ``PathResumed``; no resume within ``resume_timeout`` feeds ``ResumeGaveUp``.
Streams the bridge opens arrive here: an RFB stream takes over from the previous
one (the newest local VNC connection wins; see README "Session channel").
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agent.session import lifecycle as lc

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30.0
VIEWER_ACK_DELAY = 1.0


class ResumingViewer:
    """Mixin: needs the Agent's machine, config, service, _link, _gate, _session, _rfb, _stream_task, _resume_timer,
    _apply, _spawn and _run_rfb."""

    machine: Any
    config: Any
    service: Any
    _gate: Any
    _session: Any
    _rfb: Any
    _stream_task: Any
    _resume_timer: Any
    _link: Any

    async def _resume_attempt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes) -> None:
        """A RESUME: the authenticated viewer is back on a new connection (never the password)."""
        from agent.net import close_stream
        from agent.secure.errors import AuthFailedError, ChannelError
        from agent.secure.resume_io import accept_resume

        session, attempt, session_id = self._session, self.machine.attempt, self.machine.session_id
        if session is None or session_id is None or not self.machine.resumable:
            # No session to resume (it ended, or gave up waiting): say so, so the viewer ends at once
            # instead of retrying for its whole resume window. FAILED carries nothing secret.
            from agent.secure.handshake import Kind, encode_message

            with contextlib.suppress(ConnectionError, OSError):
                writer.write(encode_message(Kind.FAILED, b""))
            await close_stream(writer)
            return

        def received() -> int:
            # The RESUME named this channel: stop reading the old connection, and nothing is injected
            # until the resumed one carries input again.
            session.detach()
            if self._gate is not None:
                self._gate.release_all()
            return session.inner_received

        try:
            stream, peer_received = await accept_resume(
                reader, writer, session_id, session.resumption_secret, received, first, timeout=HANDSHAKE_TIMEOUT,
                ack_delay=VIEWER_ACK_DELAY, compress=self.config.compress, compression=session.compression_agreed)
        except AuthFailedError:
            log.info("refused a resume that does not match this session")
            return
        except (ChannelError, asyncio.TimeoutError, ConnectionError, OSError) as exc:
            log.info("a resume failed: %s", exc)
            return
        if session is not self._session or self.machine.attempt != attempt or not self.machine.resumable:
            await stream.close("the session is over")
            return
        try:
            session.resume(stream, peer_received)
        except ChannelError as exc:
            log.warning("cannot resume: %s", exc)
            await stream.close("cannot resume")
            self._apply(lc.ViewerLeft(reason="could not resume", attempt=attempt))
            return
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        if self.machine.state is lc.State.RECONNECTING:
            self._apply(lc.PathResumed(attempt=attempt))
        self.service.refresh_all()  # the issue: after a resume the RFB stream resends a full frame

    def _transport_ended(self, session: Any, attempt: int, cut: bool) -> None:
        """The viewer's connection ended: a cut (wait for its resume) or its authenticated CLOSE."""
        if session is not self._session:
            return
        if cut:
            from agent.secure.errors import PeerSilentError

            self._apply(lc.PathLost(reason=str(session.error or "connection lost"), attempt=attempt))
            if isinstance(session.error, PeerSilentError) and self._link is not None:
                self._link.path_died_silently()
            return
        if not session.peer_closed and session.error is None:
            return  # our own close: whoever closed fed the machine
        reason = session.close_reason or (str(session.error) if session.error else "the technician ended the session")
        self._apply(lc.ViewerLeft(reason=reason, attempt=attempt))
        if session is self._session:
            self._spawn(self._drop_viewer(reason))  # type: ignore[attr-defined]

    def _session_message(self, message: dict[str, Any]) -> None:
        """A session-stream message from the viewer. Unknown types are ignored (later: chat, clipboard)."""
        log.debug("session message from the viewer: %s", message.get("type"))

    def _stream_opened(self, stream: Any) -> None:
        """The bridge opened a stream: an RFB stream takes over from the previous one (see the README)."""
        if stream.kind != "rfb":
            stream.close("unknown stream kind")
            return
        old, task = self._rfb, self._stream_task
        self._rfb, self._stream_task = stream, None
        if task is not None:
            task.cancel()
        if old is not None:
            old.close("replaced by a new local viewer")
        if self.machine.state is lc.State.ACTIVE:
            self._stream_task = self._spawn(self._run_rfb(stream))

    def _resume_expired(self, attempt: int) -> None:
        self._resume_timer = None
        if self.machine.state is lc.State.RECONNECTING and self.machine.attempt == attempt:
            minutes = self.config.resume_timeout
            self._apply(lc.ResumeGaveUp(reason=f"the technician's connection was lost and did not come back "
                                               f"within {minutes:g} s", attempt=attempt))
