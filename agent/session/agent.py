"""One support session, wired together (asyncio): the library API the CLI is built on.

``Agent`` owns the screen source, the consent ledger, the control socket, the
link (relay registration or a direct listener), the RFB service and the
session state machine (agent.session.lifecycle). It feeds what happens to the machine
and executes the actions the machine returns; every rule about consent,
scope and wiping lives in the machine, not here.

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
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from agent.session import lifecycle as lc
from agent.net import parse_address
from agent.control.protocol import ControlError
from agent.errors import RejnetError, UsageError
from agent.session.flow import FlowController
from agent.capture.base import ScreenSource
from agent.inputs.base import InputBackend, NullInput
from agent.inputs.gate import ScopeGate
from agent.net import stop_server

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 120.0     # seconds the customer has to accept a connection (--confirm-each)
HANDSHAKE_TIMEOUT = 30.0
FLOW_POLL = 0.05            # how often a blocked sender re-checks the window without an ACK
LINK_EVENT_INTERVAL = 2.0   # seconds between "link" statistics events to control-socket subscribers
# The viewer sends only small requests and input, and nothing flow-controls on our ACKs of them:
# acknowledge lazily, so a typing session is not one ACK record down the customer's link per keystroke.
VIEWER_ACK_DELAY = 1.0


@dataclass
class AgentConfig:
    """How the agent reaches the technician and what it shares. Everything has a safe default."""

    relay: str | None = None                 # HOST:PORT of rejnet-relay
    listen: str | None = None                # HOST:PORT for direct LAN connections instead of a relay
    display: str | None = None               # X display (default $DISPLAY)
    # A screen the embedder opened (e.g. agent.workloads.SyntheticSource) instead of the display; the agent
    # closes it. With a source and no input_backend the session is view-only: we know no desktop to drive.
    source: ScreenSource | None = field(default=None, repr=False)
    control_path: str | None = None          # control socket path (default $XDG_RUNTIME_DIR/rejnet-agent/control.sock)
    control: bool = True                     # serve the control socket at all
    consent_db: str | None = None            # consent ledger path (default ~/.local/share/rejnet-agent/consent.db)
    confirm_each: bool = False               # the customer accepts each connection on the control socket
    confirm_timeout: float = CONFIRM_TIMEOUT
    fps: float = 30.0
    compress: bool = True                    # long-window zstd under RFB (ZDATA); off saves CPU, costs bytes
    name: str = "rejnet"
    input_backend: InputBackend | None = field(default=None, repr=False)  # None: XTest on a real display
    auth_failure_delay: float = 1.0

    def __post_init__(self) -> None:
        if self.relay and self.listen:
            raise UsageError("use either --relay or --listen, not both")
        if not self.relay and not self.listen:
            raise UsageError("no relay: pass --relay HOST:PORT, set REJNET_RELAY, or --listen HOST:PORT")


class Agent:
    """A remote-support session on this machine; see the module docstring."""

    def __init__(self, config: AgentConfig, *,
                 on_credentials: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self._on_credentials = on_credentials
        self.machine = lc.SessionMachine(confirm_each=config.confirm_each)
        self.started_at = time.time()
        self.source: Any = None
        self.ledger: Any = None
        self.control: Any = None
        self.service: Any = None
        self._gate: ScopeGate | None = None
        self._registration: Any = None
        self._listener: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stream: Any = None
        self._stream_task: asyncio.Task[Any] | None = None
        self._confirm_timer: asyncio.TimerHandle | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._done: asyncio.Future[tuple[str, int]] | None = None
        self.flow: FlowController | None = None
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
            self.source = cfg.source if cfg.source is not None else await asyncio.to_thread(open_source, cfg.display)
            self._gate = ScopeGate(self._open_input())
            self.service = RFBService(self.source, input_backend=self._gate, fps=cfg.fps,
                                      name=cfg.name)
            self.service.on_update = self._on_update
            await self.service.start()
            if cfg.control:
                from agent.control.server import ControlServer

                self.control = ControlServer(self, cfg.control_path)
                await self.control.start()
            session_id = await self._open_link()
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
            return open_input_backend(cfg.display)
        except InputError as exc:
            log.warning("input injection unavailable, the session is view-only: %s", exc)
            return NullInput()

    async def _open_link(self) -> str:
        cfg = self.config
        if cfg.relay:
            from agent.relay.client import AgentRegistration

            from agent.relay.protocol import DEFAULT_PORT

            host, port = parse_address(cfg.relay, DEFAULT_PORT)
            self._registration = await AgentRegistration.register(host, port)
            self._spawn(self._ticket_loop(host, port))
            return self._registration.session_id
        assert cfg.listen is not None
        host, port = parse_address(cfg.listen, allow_port_zero=True)
        try:
            self._listener = await asyncio.start_server(self._on_direct, host, port)
        except OSError as exc:
            raise UsageError(f"cannot listen on {cfg.listen}: {exc.strerror}") from None
        # Direct mode has no relay to assign an ID: make one locally (it binds the PAKE).
        return str(secrets.randbelow(900_000_000) + 100_000_000)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """The bound address in direct mode (port 0 picks one)."""
        if self._listener is None or not self._listener.sockets:
            return None
        host, port = self._listener.sockets[0].getsockname()[:2]
        return host, port

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
        if self._listener is not None:
            await stop_server(self._listener)  # first, so no new connection starts a task below
        await self._drop_viewer("session ended")
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._registration is not None:
            with contextlib.suppress(Exception):
                await self._registration.close()
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
        """Session ID and password to show the customer (only for the owner of the session)."""
        try:
            return self.machine.credentials()
        except lc.LifecycleError as exc:
            raise ControlError("no_session", str(exc)) from None

    def status(self) -> dict[str, Any]:
        status = self.machine.status()
        stream = self._stream
        # bytes_sent: RFB bytes the encoders produced; link_bytes_sent: what the channel put on the wire
        # for this viewer (compressed, headers and tags included in neither)
        status.update(bytes_sent=self.stats["bytes_sent"], updates=self.stats["updates"],
                      link_bytes_sent=stream.bytes_sent if stream is not None else None,
                      safety_code=stream.safety_code if stream is not None else None)
        if self.flow is not None:
            status.update(rtt=self.flow.rtt, bandwidth=self.flow.bandwidth)
        return status

    async def consent(self, scope: str, terms_version: str | None = None, terms_sha256: str | None = None) -> int:
        """Record the customer's consent durably, then let the session use it. Returns the ledger row id."""
        from agent.consent.ledger import LedgerError
        from agent.consent.terms import CURRENT_VERSION, is_packaged, load_terms

        version = terms_version or CURRENT_VERSION
        digest = terms_sha256 or load_terms(version).sha256
        if not is_packaged(version, digest):
            raise ControlError("terms_mismatch", "the terms shown are not the terms this agent ships "
                                                 f"(version {version}); show the packaged text")
        if self.machine.state is lc.State.ENDED:
            raise ControlError("ended", "the session has ended")
        try:
            row = await asyncio.to_thread(self.ledger.record_consent, scope=scope, terms_version=version,
                                          terms_sha256=digest, session_start=self.started_at)
        except LedgerError as exc:
            raise ControlError("ledger", f"consent not recorded, nothing is shared: {exc}") from None
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
        try:
            if cmd == "status":
                return self.status()
            if cmd == "credentials":
                return self.credentials()
            if cmd == "consent":
                row = await self.consent(args["scope"], args.get("terms_version"), args.get("terms_sha256"))
                return {"recorded": True, "consent_row": row, "scope": args["scope"]}
            if cmd == "accept":
                await self.accept()
            elif cmd == "reject":
                await self.reject()
            elif cmd == "set_scope":
                await self.set_scope(args["scope"])
            elif cmd == "terminate":
                await self.terminate(args.get("reason") or "ended by the customer")
            else:
                raise ControlError("unknown_command", f"unknown command {cmd!r}")
        except lc.LifecycleError as exc:
            raise ControlError("not_allowed", str(exc)) from None
        return self.machine.status()

    # ------------------------------------------------------------------ viewers

    async def _ticket_loop(self, host: str, port: int) -> None:
        from agent.relay.client import RelayError, open_agent_data

        try:
            async for ticket in self._registration.tickets():
                if not self.machine.can_accept_viewer:
                    log.info("a viewer asked while the session is busy; ignoring its ticket")
                    continue
                try:
                    reader, writer = await open_agent_data(host, port, self._registration.session_id, ticket)
                except (RelayError, OSError, asyncio.TimeoutError) as exc:
                    log.warning("could not open the data connection for a viewer: %s", exc)
                    continue
                self._spawn(self._viewer_attempt(reader, writer, "relay"))
        except RelayError as exc:
            self._apply(lc.LinkFailed(reason=f"relay lost: {exc}"))

    async def _on_direct(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.machine.can_accept_viewer:
            writer.close()
            return
        peer = writer.get_extra_info("peername")
        await self._viewer_attempt(reader, writer, f"{peer[0]}:{peer[1]}" if peer else "direct")

    async def _viewer_attempt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        from agent.secure.errors import AuthFailedError, ChannelError
        from agent.secure.stream import accept_agent

        if not self.machine.can_accept_viewer:
            writer.close()
            return
        self._apply(lc.ViewerArrived(peer))
        attempt = self.machine.attempt
        password = self.machine.password
        session_id = self.machine.session_id
        if password is None or session_id is None:
            writer.close()
            return
        try:
            stream = await accept_agent(reader, writer, session_id, password.reveal(), timeout=HANDSHAKE_TIMEOUT,
                                        failure_delay=self.config.auth_failure_delay, ack_delay=VIEWER_ACK_DELAY,
                                        compress=self.config.compress)
        except AuthFailedError:
            self._apply(lc.AuthFailed(attempt=attempt))
            return
        except (ChannelError, asyncio.TimeoutError, ConnectionError, OSError) as exc:
            self._apply(lc.ViewerLeft(reason=f"handshake failed: {exc}", attempt=attempt))
            return
        if self.machine.attempt != attempt or self.machine.state is not lc.State.AUTHENTICATING:
            await stream.close("session is no longer waiting for this viewer")
            return
        self._stream = stream
        self.flow = FlowController()
        self._spawn(self._watch_stream(stream, attempt))
        self._publish({"event": "safety_code", "code": stream.safety_code})
        self._apply(lc.AuthSucceeded(attempt=attempt))

    async def _watch_stream(self, stream: Any, attempt: int) -> None:
        """Notice the viewer leaving while no RFB runs (consent pending), and feed flow control."""
        from agent.secure.errors import ChannelError

        loop = asyncio.get_running_loop()
        reason = "viewer disconnected"
        acked = -1
        next_report = loop.time() + LINK_EVENT_INTERVAL
        try:
            while True:
                await asyncio.sleep(FLOW_POLL)
                if loop.time() >= next_report:
                    next_report = loop.time() + LINK_EVENT_INTERVAL
                    self._publish(self._link_event(stream))
                if stream.error is not None or stream.peer_closed:
                    reason = stream.close_reason or (str(stream.error) if stream.error else reason)
                    break
                flow = self.flow
                if flow is not None:
                    if stream.rtt is not None:
                        flow.on_rtt(stream.rtt)
                    now_acked = stream.bytes_sent - stream.in_flight
                    if now_acked != acked:
                        acked = now_acked
                        flow.on_ack(now_acked, loop.time())
                        if self.service is not None:
                            for viewer in self.service.viewers:
                                viewer.updater.manager.quality_cap = flow.quality_cap
                                viewer.kick()
        except (ChannelError, asyncio.CancelledError):
            pass
        if stream is self._stream:
            self._stream = None
            self._apply(lc.ViewerLeft(reason=reason, attempt=attempt))

    def _link_event(self, stream: Any) -> dict[str, Any]:
        """The ``link`` event subscribers see every few seconds while a viewer is connected."""
        flow = self.flow
        bandwidth = flow.bandwidth if flow is not None else None
        return {"event": "link", "rtt_ms": None if stream.rtt is None else round(1000 * stream.rtt, 1),
                "bandwidth_kbit": None if bandwidth is None else round(8 * bandwidth / 1000, 1),
                "window": flow.window if flow is not None else None, "in_flight": stream.in_flight,
                "bytes_sent": stream.bytes_sent, "bytes_received": stream.bytes_received,
                "updates": self.stats["updates"]}

    def _may_send(self) -> bool:
        flow, stream = self.flow, self._stream
        return flow is None or stream is None or flow.may_send(stream.in_flight)

    async def _run_rfb(self, stream: Any) -> None:
        reader, writer = stream.as_streams()
        try:
            await self.service.serve_connection(reader, writer, security="none", may_send=self._may_send,
                                                outer_compression=stream.compressing)
        finally:
            if stream is self._stream:
                self._stream = None
                attempt = self.machine.attempt
                self._apply(lc.ViewerLeft(reason=stream.close_reason or "viewer disconnected", attempt=attempt))
                await stream.close("viewer disconnected")

    async def _drop_viewer(self, reason: str) -> None:
        stream, task = self._stream, self._stream_task
        self._stream = None
        self._stream_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close(reason)

    def _on_update(self, viewer: Any, stats: Any) -> None:
        self.stats["bytes_sent"] = getattr(stats, "bytes_sent", self.stats["bytes_sent"])
        self.stats["updates"] = getattr(stats, "updates_sent", self.stats["updates"])
        self.stats["last_update"] = time.time()

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
            if self._stream is not None and self._stream_task is None:
                self._stream_task = self._spawn(self._run_rfb(self._stream))
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
        elif isinstance(action, lc.DisconnectViewer):
            if self._stream is not None:
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
        if self.control is not None:
            self.control.publish(event)
        for queue in list(self._subscribers):
            queue.put_nowait(event)


__all__ = ["Agent", "AgentConfig", "RejnetError"]
