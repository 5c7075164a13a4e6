"""One support session, wired together (asyncio): the library API the CLI is built on.

``Agent`` owns the screen source, the consent ledger, the control socket, the
link (agent.session.link: relay registration or a direct listener), the RFB
service and the session state machine (agent.session.lifecycle). It feeds
what happens to the machine and executes the actions the machine returns;
every rule about consent, scope and wiping lives in the machine, not here.
The connected viewer's channel, with its flow control and link statistics,
is a ViewerChannel (agent.session.channel). A request the session refuses
raises a RefusedError from agent.session.errors, with a ``code`` the control
socket passes on unchanged.

Example (see README "Embedding")::

    agent = Agent(AgentConfig(relay="relay.example:7400"))
    await agent.start()
    print(agent.credentials())          # {"session": "...", "password": "..."}
    await agent.consent("view")         # the customer accepted the terms
    async for event in agent.events():
        ...
    await agent.terminate("done")
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Optional

from agent.capture.base import ScreenSource
from agent.errors import RejnetError, UsageError
from agent.inputs.base import InputBackend, NullInput
from agent.inputs.gate import ScopeGate
from agent.service.priority import LinkState
from agent.session import lifecycle as lc
from agent.session.channel import LINK_EVENT_INTERVAL, ViewerChannel
from agent.session.errors import CommandUnknown, ConsentNotRecorded, NoSession, NotAllowed, SessionOver, TermsMismatch
from agent.session.flow import FlowController
from agent.session.link import Link
from agent.session.admission import HANDSHAKE_TIMEOUT, PREAUTH_TIMEOUT, VIEWER_ACK_DELAY, AdmittingViewer  # noqa: F401
from agent.session.resuming import ResumingViewer

log = logging.getLogger(__name__)


def _utc(at: float | None) -> str | None:
    """A timestamp as the ledger keeps it, for people and launchers: ISO 8601 in UTC, to the second."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


CONFIRM_TIMEOUT = 120.0     # seconds the customer has to accept a connection (--confirm-each)
RESUME_TIMEOUT = 120.0      # seconds a cut viewer has to resume before the session gives it up


@dataclass
class AgentConfig:
    """How the agent reaches the technician and what it shares. Everything has a safe default."""

    relay: str | None = None                 # HOST:PORT of rejnet-relay
    listen: str | None = None                # HOST:PORT for direct LAN connections instead of a relay
    display: str | None = None               # X display (default $DISPLAY)
    backend: str | None = None               # capture/input backend: "x11" | "gnome" (default: chosen by the session type)
    # A screen the embedder opened (e.g. agent.workloads.SyntheticSource) instead of the display; the agent
    # closes it. With a source and no input_backend the session is view-only: we know no desktop to drive.
    source: ScreenSource | None = field(default=None, repr=False)
    control_path: str | None = None          # control socket path (default $XDG_RUNTIME_DIR/rejnet-agent/control.sock)
    control: bool = True                     # serve the control socket at all
    consent_db: str | None = None            # consent ledger path (default ~/.local/share/rejnet-agent/consent.db)
    confirm_each: bool = False               # the customer accepts each connection on the control socket
    confirm_timeout: float = CONFIRM_TIMEOUT
    fps: float = 30.0
    churn_fps: float | None = None           # grabs a second of areas that never stop changing (None: the
                                             # service's default, agent.service.capture_loop.CHURN_FPS; 0: at fps)
    compress: bool = True                    # long-window zstd under RFB (ZDATA); off saves CPU, costs bytes
    name: str = "rejnet"
    input_backend: InputBackend | None = field(default=None, repr=False)  # None: XTest on a real display
    auth_failure_delay: float = 1.0
    resume_timeout: float = RESUME_TIMEOUT   # how long a cut viewer may take to resume (then the session ends)
    keep_waiting: bool = False               # after the technician leaves: wait for a new one (new password,
                                             # fresh consent) instead of ending; the launcher chooses

    def __post_init__(self) -> None:
        if self.relay and self.listen:
            raise UsageError("use either --relay or --listen, not both")
        if not self.relay and not self.listen:
            raise UsageError("no relay: pass --relay HOST:PORT, set REJNET_RELAY, or --listen HOST:PORT")


class Agent(AdmittingViewer, ResumingViewer):
    """A remote-support session on this machine; see the module docstring."""

    def __init__(self, config: AgentConfig, *,
                 on_credentials: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self._on_credentials = on_credentials
        self.machine = lc.SessionMachine(confirm_each=config.confirm_each, keep_waiting=config.keep_waiting)
        self.started_at = time.time()
        self.consent_recorded_at: float | None = None  # when the last consent row was written
        self.source: Any = None
        self.ledger: Any = None
        self.control: Any = None
        self.service: Any = None
        self._gate: ScopeGate | None = None
        self._link: Link | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channel: ViewerChannel | None = None  # flow control of the authenticated viewer's channel
        self._session: Any = None  # its SessionChannel (agent.secure.session_channel): one per viewer, resumable
        self._rfb: Any = None      # the RFB stream inside it (the newest local VNC connection on the bridge)
        self._stream_task: asyncio.Task[Any] | None = None
        self._handshakes: dict[int, asyncio.StreamWriter] = {}  # attempt -> connection, while its PAKE runs
        self._throttle_told = ""  # the throttle reason the launcher was last told of ("": none)
        self._confirm_timer: asyncio.TimerHandle | None = None
        self._resume_timer: asyncio.TimerHandle | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._done: asyncio.Future[tuple[str, int]] | None = None
        self.flow: FlowController | None = None  # the latest viewer's (kept after it left, for status)
        self.stats: dict[str, Any] = {"bytes_sent": 0, "updates": 0, "last_update": None, "viewers": 0}

    # ------------------------------------------------------------------ start / stop

    async def start(self) -> None:
        """Open the screen, ledger, control socket and link; then the session is ``waiting``."""
        from agent.capture import open_source
        from agent.consent.ledger import ConsentLedger, default_ledger_path
        from agent.service.rfb_service import RFBService

        cfg = self.config
        self._done = asyncio.get_running_loop().create_future()
        self.ledger = await asyncio.to_thread(ConsentLedger, cfg.consent_db or default_ledger_path())
        try:
            self.source = cfg.source if cfg.source is not None else await asyncio.to_thread(open_source, cfg.display, cfg.backend)
            self._gate = ScopeGate(self._open_input())
            churn = {} if cfg.churn_fps is None else {"churn_fps": cfg.churn_fps}
            self.service = RFBService(self.source, input_backend=self._gate, fps=cfg.fps, name=cfg.name, **churn)
            self.service.on_update = self._on_update
            await self.service.start()
            if cfg.control:
                from agent.control.server import ControlServer

                self.control = ControlServer(self, cfg.control_path)
                await self.control.start()
            self._link = Link(relay=cfg.relay, listen=cfg.listen, on_viewer=self._viewer_attempt,
                              can_accept=lambda: self.machine.can_accept_viewer or self.machine.resumable,
                              on_lost=self._link_lost)
            session_id = await self._link.open()
        except BaseException:
            await self._release()
            raise
        self._apply(lc.Registered(session_id))

    def _open_input(self) -> InputBackend:
        cfg = self.config
        if cfg.input_backend is not None:
            return cfg.input_backend
        if cfg.source is not None:
            return NullInput()  # a screen the embedder opened: no desktop we know to drive
        from agent.inputs import InputError, open_input_backend

        try:
            return open_input_backend(cfg.display, cfg.backend, self.source)
        except InputError as exc:
            log.warning("input injection unavailable, the session is view-only: %s", exc)
            return NullInput()

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """The bound address in direct mode (port 0 picks one)."""
        return self._link.listen_address if self._link is not None else None

    @property
    def _stream(self) -> Any:
        """The authenticated viewer's SessionChannel, or None."""
        return self._session

    async def wait(self) -> tuple[str, int]:
        """Wait for the end of the session; returns (reason, exit code)."""
        assert self._done is not None, "start() first"
        return await asyncio.shield(self._done)

    async def close(self) -> None:
        """Terminate (if still running) and release everything."""
        if self.machine.state is not lc.State.ENDED:
            self._apply(lc.Terminate(by="launcher", reason="agent closed"))
        await self._release()

    async def _release(self) -> None:
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
        if self._resume_timer is not None:
            self._resume_timer.cancel()
        if self._link is not None:
            await self._link.close()  # first, so no new connection starts a task below
        await self._drop_viewer("session ended")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.service is not None:
            await self.service.close()
        if self._gate is not None:
            self._gate.close()
        if self.control is not None:
            await self.control.close()
        if self.source is not None:
            self.source.close()
        if self.ledger is not None:
            self.ledger.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ the launcher's API

    def credentials(self) -> dict[str, str]:
        """Session ID and password to show the customer (only for the owner of the session).

        Raises NoSession before the link registered and after the end."""
        try:
            return self.machine.credentials()
        except lc.LifecycleError as exc:
            raise NoSession(str(exc)) from None

    def status(self) -> dict[str, Any]:
        status = self.machine.status()
        stream = self._stream
        # bytes_sent: RFB bytes the encoders produced; link_bytes_sent: what the channel put on the wire
        # for this viewer (compressed, headers and tags included in neither)
        status.update(bytes_sent=self.stats["bytes_sent"], updates=self.stats["updates"],
                      link_bytes_sent=stream.bytes_sent if stream is not None else None,
                      safety_code=stream.safety_code if stream is not None else None,
                      capture_backend=getattr(self.source, "backend", None) or None)
        if self.flow is not None:
            status.update(rtt=self.flow.rtt, bandwidth=self.flow.bandwidth)
        status.update(self._change_latency())
        return status

    def _change_latency(self) -> dict[str, Any]:
        """From a change on screen being captured to the update carrying it leaving the agent (ms)."""
        stats = self.stats.get("update_stats")
        p50 = stats.change_latency(0.5) if stats is not None else None
        p95 = stats.change_latency(0.95) if stats is not None else None
        return {"change_to_update_ms_p50": None if p50 is None else round(1000 * p50, 1),
                "change_to_update_ms_p95": None if p95 is None else round(1000 * p95, 1)}

    async def consent(self, scope: str, terms_version: str | None = None, terms_sha256: str | None = None) -> int:
        """Record the customer's consent durably, then let the session use it. Returns the ledger row id.

        Raises TermsMismatch, SessionOver or ConsentNotRecorded (agent.session.errors); nothing is shared then."""
        from agent.consent.ledger import LedgerError
        from agent.consent.terms import CURRENT_VERSION, is_packaged, load_terms

        version = terms_version or CURRENT_VERSION
        digest = terms_sha256 or load_terms(version).sha256
        if not is_packaged(version, digest):
            raise TermsMismatch("the terms shown are not the terms this agent ships "
                                f"(version {version}); show the packaged text")
        if self.machine.state is lc.State.ENDED:
            raise SessionOver("the session has ended")
        at = time.time()
        try:
            row = await asyncio.to_thread(self.ledger.record_consent, scope=scope, terms_version=version,
                                          terms_sha256=digest, session_start=self.started_at, now=at)
        except LedgerError as exc:
            raise ConsentNotRecorded(f"consent not recorded, nothing is shared: {exc}") from None
        self.consent_recorded_at = at
        self._apply(lc.ConsentRecorded(scope, row))
        return row

    async def accept(self) -> None:
        self._apply(lc.Accepted())

    async def reject(self) -> None:
        self._apply(lc.Rejected())

    async def set_scope(self, scope: str) -> None:
        self._apply(lc.ScopeChanged(scope))
        consent_id = self.machine.consent_id
        if consent_id is not None:
            from agent.consent.ledger import LedgerError

            with contextlib.suppress(LedgerError):
                await asyncio.to_thread(self.ledger.record_scope, consent_id, scope)

    async def terminate(self, reason: str = "ended by the customer") -> None:
        self._apply(lc.Terminate(by="launcher", reason=reason))

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event the control socket's subscribers see, until the session ends."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                yield event
                if event.get("event") == "ended":
                    return
        finally:
            self._subscribers.discard(queue)

    # ControlHandler for agent.control.server
    async def handle(self, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        """One control-socket request; a refusal is a RefusedError, which the socket answers with its code."""
        try:
            if cmd == "status":
                return self.status()
            if cmd == "credentials":
                return self.credentials()
            if cmd == "consent":
                row = await self.consent(args["scope"], args.get("terms_version"), args.get("terms_sha256"))
                return {"recorded": True, "consent_row": row, "scope": args["scope"],
                        "recorded_at": _utc(self.consent_recorded_at)}
            if cmd == "accept":
                await self.accept()
            elif cmd == "reject":
                await self.reject()
            elif cmd == "set_scope":
                await self.set_scope(args["scope"])
            elif cmd == "terminate":
                await self.terminate(args.get("reason") or "ended by the customer")
            else:
                raise CommandUnknown(f"unknown command {cmd!r}")
        except lc.LifecycleError as exc:
            raise NotAllowed(str(exc)) from None
        return self.machine.status()

    # ------------------------------------------------------------------ viewers

    def _link_lost(self, reason: str) -> None:
        self._apply(lc.LinkFailed(reason=reason))

    def _report_link(self, event: dict[str, Any]) -> None:
        """The ``link`` event subscribers see every LINK_EVENT_INTERVAL seconds while a viewer is connected."""
        event["updates"] = self.stats["updates"]
        event.update(self._change_latency())
        self._publish(event)

    def _may_send(self) -> bool:
        channel, session = self._channel, self._session
        if session is not None and not session.connected:
            return False  # cut: nothing new until the resume (what was sent is replayed then)
        return channel is None or channel.may_send()

    def _link_state(self) -> Any:
        """The link as the viewer's flow control sees it now, for the updater's pacing (None: no estimate)."""
        channel = self._channel
        # the peak: while the bulk is paced, ACKs show only what we chose to send (the backlog check
        # holds the bulk back if the link got slower meanwhile)
        rate = None if channel is None else channel.flow.peak_bandwidth
        if channel is None or rate is None:
            return None
        stream = channel.stream
        return LinkState(rate, stream.in_flight, channel.flow.min_rtt or 0.1, stream.bytes_sent)

    def _link_sent(self) -> Optional[int]:
        """``_link_state().sent`` (None where that is None), read around every update's flush."""
        channel = self._channel
        if channel is None or channel.flow.peak_bandwidth is None:
            return None
        return channel.stream.bytes_sent

    async def _run_rfb(self, stream: Any) -> None:
        reader, writer = stream.as_streams()
        try:
            await self.service.serve_connection(reader, writer, security="none", may_send=self._may_send,
                                                outer_compression=stream.compressing, link=self._link_state,
                                                link_sent=self._link_sent)
        finally:
            if stream is self._rfb:
                self._rfb = None
                if self._stream_task is asyncio.current_task():
                    self._stream_task = None
            stream.close("the RFB stream ended")

    async def _drop_viewer(self, reason: str) -> None:
        channel, session, task = self._channel, self._session, self._stream_task
        self._channel = self._session = self._rfb = None
        self._stream_task = None
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if channel is not None:
            channel.stop()
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close(reason)

    def _on_update(self, viewer: Any, stats: Any) -> None:
        self.stats["bytes_sent"] = getattr(stats, "bytes_sent", self.stats["bytes_sent"])
        self.stats["updates"] = getattr(stats, "updates_sent", self.stats["updates"])
        self.stats["last_update"] = time.time()
        self.stats["update_stats"] = stats

    # ------------------------------------------------------------------ the machine

    def _apply(self, event: lc.Event) -> None:
        """Feed one event to the state machine and carry out its actions, in order."""
        for action in self.machine.handle(event):
            self._execute(action)

    def _execute(self, action: lc.Action) -> None:
        if isinstance(action, lc.EmitEvent):
            self._publish(action.data)
        elif isinstance(action, lc.ShowCredentials):
            if self._on_credentials is not None:
                creds = self.machine.credentials()
                self._on_credentials(creds["session"], creds["password"])
        elif isinstance(action, lc.RequestConfirmation):
            if self._confirm_timer is not None:
                self._confirm_timer.cancel()
            loop = asyncio.get_running_loop()
            self._confirm_timer = loop.call_later(self.config.confirm_timeout, self._apply,
                                                  lc.ConfirmTimedOut(attempt=action.attempt))
        elif isinstance(action, lc.StartStreaming):
            if self._confirm_timer is not None:
                self._confirm_timer.cancel()
                self._confirm_timer = None
            if self._rfb is not None and self._stream_task is None:
                self._stream_task = self._spawn(self._run_rfb(self._rfb))
        elif isinstance(action, lc.SetScope):
            if self._gate is not None:
                self._gate.set_scope(action.scope)
        elif isinstance(action, lc.StopStreaming):
            task, self._stream_task = self._stream_task, None
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        elif isinstance(action, lc.ReleaseInputs):
            if self._gate is not None:
                self._gate.release_all()
        elif isinstance(action, lc.AwaitResume):
            if self._resume_timer is not None:
                self._resume_timer.cancel()
            self._resume_timer = asyncio.get_running_loop().call_later(
                self.config.resume_timeout, self._resume_expired, action.attempt)
        elif isinstance(action, lc.DisconnectViewer):
            if self._session is not None:
                self._spawn(self._drop_viewer(action.reason))
        elif isinstance(action, lc.RecordEnd):
            self._record_end(action.consent_id)
        elif isinstance(action, lc.Ended):
            if self._confirm_timer is not None:
                self._confirm_timer.cancel()
            if self._done is not None and not self._done.done():
                self._done.set_result((action.reason, action.exit_code))
        # RotatePassword: the machine already holds the new password; the event is published.

    def _record_end(self, consent_id: int) -> None:
        from agent.consent.ledger import LedgerError

        try:
            self.ledger.record_end(consent_id)
        except LedgerError as exc:
            log.error("could not record the session end in the consent ledger: %s", exc)

    def _publish(self, event: dict[str, Any]) -> None:
        session = self._session
        if session is not None and event.get("event") == "state" and not session.closed:
            # the technician's side of the session stream: state and scope only, never the launcher's details
            session.send_message({"type": "state", "state": event.get("state"), "scope": event.get("scope")})
        if self.control is not None:
            self.control.publish(event)
        for queue in list(self._subscribers):
            queue.put_nowait(event)


__all__ = ["LINK_EVENT_INTERVAL", "PREAUTH_TIMEOUT", "Agent", "AgentConfig", "RejnetError"]
