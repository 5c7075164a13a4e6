"""The customer's window as a plain object: its pages, its state, and what each button sends.

This file owns the launcher's behaviour. It imports no Tk and does no I/O
(the idlelib ``query.py`` split): the Tk layer (``window.py``) draws the
``View`` that ``view()`` returns (built by ``pages.py``) and calls
``act(action)`` when the customer presses something; the agent I/O layer
(``agent_io.py``) delivers the agent's ready line, replies, events and exit
here. Every method returns the effects to carry out, in order (``model.py``):
``StartAgent``, ``Send`` (one control-socket command, DESIGN §4.4),
``StopAgent``, ``Copy``, ``Attention`` and ``Quit``.

Pages::

    terms --consent recorded--> waiting --state active--> session
      session --state waiting (viewer left)--> waiting
      any --ended--> ended ;  any --agent gone / relay unreachable--> failed
      failed --retry--> terms ;  ended --new session--> terms

Rules it keeps whatever the agent does:
* nothing that could share anything is sent before the customer presses
  "Wyrażam zgodę": until then the only command is ``status``;
* the page follows the agent's state, not the launcher's hopes: a ``state``
  event saying ``active`` shows the in-session bar whatever page was up;
* a connection waiting for confirmation (``--confirm-each``) is rejected when
  the customer does not answer in time; a timeout never accepts.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from agent.launcher.catalogue import Catalogue
from agent.launcher.model import (
    SCOPES, Attention, Copy, Effect, Page, Quit, Send, StartAgent, StopAgent, Terms, View, group_session_id)
from agent.launcher.pages import view_of

CONFIRM_TIMEOUT = 60.0       # seconds the customer has to allow a connection (--confirm-each)
AGENT_CONFIRM_MARGIN = 10.0  # the agent's own timeout, a backstop if the window hangs: later than ours
START_TIMEOUT = 60.0         # seconds from starting the agent to its ready line
END_REASON = "ended by the customer"
CLOSE_REASON = "the customer closed the window"


def classify_exit(code: int | None, stderr: str, was_ready: bool) -> str:
    """Why the agent process ended, as the suffix of a ``failed.*`` catalogue key."""
    text = stderr.lower()
    if code == 5:
        return "display"
    if "another agent is running" in text:
        return "running"
    if "relay" in text:
        return "link_lost" if was_ready else "relay"
    return "crashed"


def agent_arguments(relay: str, confirm_each: bool, confirm_timeout: float) -> tuple[str, ...]:
    """The agent's command line after the program: ``--json``, the relay, and --confirm-each if asked."""
    args = ["--json", "--relay", relay]
    if confirm_each:
        args += ["--confirm-each", "--confirm-timeout", f"{confirm_timeout + AGENT_CONFIRM_MARGIN:g}"]
    return tuple(args)


def last_line(text: str) -> str:
    """The agent's last stderr line without its ``error:`` prefix: the detail shown to the help desk."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line[len("error: "):][:300] if line.startswith("error: ") else line[:300]


class Launcher:
    """The window's state and rules; see the module docstring. Attributes are read by ``pages.py``."""

    def __init__(self, catalogue: Catalogue, terms: Terms, *, relay: str | None, confirm_each: bool = False,
                 confirm_timeout: float = CONFIRM_TIMEOUT, clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time) -> None:
        self.t = catalogue
        self.terms = terms
        self.relay = relay
        self.confirm_each = confirm_each
        self.confirm_timeout = confirm_timeout
        self._clock = clock
        self._wallclock = wallclock
        self.page = Page.TERMS
        self.scope_choice = "view"  # privacy by default: the customer widens it on purpose
        self._reset_session()

    def _reset_session(self) -> None:
        self.agent = "off"                 # off | starting | ready | gone
        self.started_at: float | None = None
        self.consent_queued = False        # pressed before the agent was ready: sent once it is
        self.consenting = False
        self.consent: dict[str, Any] | None = None  # the consent in force: {"time", "version", "scope", "last_scope"}
        self.consent_log: list[dict[str, Any]] = []  # every consent given in this window, for the "after" page
        self.scope_now: str | None = None  # the scope in force while active (from the agent)
        self.viewer_seen = False           # an authenticated technician was (or is) connected
        self.agent_state: str | None = None
        self.session_id: str | None = None
        self.password: str | None = None
        self.safety_code: str | None = None
        self.accept_wanted = False
        self.prompt_deadline: float | None = None
        self.prompt_timed_out = False
        self.ending = False
        self.ended_by: str | None = None   # customer | assistant | other
        self.failure: str | None = None
        self.failure_detail = ""
        self.was_ready = False
        self.notice: tuple[str, dict[str, Any]] | None = None  # catalogue key and its fields

    # --- starting and stopping the agent ---------------------------------------

    def start(self) -> list[Effect]:
        """Open the window: show the terms and start the agent in the background."""
        self.page = Page.TERMS
        if not self.relay:
            self._fail("no_relay", "")
            return []
        self.agent = "starting"
        self.started_at = self._clock()
        self.notice = ("notice.starting", {})
        return [StartAgent(agent_arguments(self.relay, self.confirm_each, self.confirm_timeout))]

    def on_ready(self, ready: dict[str, Any]) -> list[Effect]:
        """The agent printed its ready line and the control connections are open (events subscribed)."""
        if self.agent != "starting":
            return []
        self.agent = "ready"
        self.was_ready = True
        if self.notice and self.notice[0] == "notice.starting":
            self.notice = None
        state = ready.get("state")
        self.agent_state = state if isinstance(state, str) else None
        effects: list[Effect] = [Send("status")]
        if self.consent_queued:
            self.consent_queued = False
            effects += self._send_consent()
        return effects

    def on_agent_exit(self, code: int | None, stderr: str) -> list[Effect]:
        """The agent process ended (after its last event was delivered)."""
        was, self.agent = self.agent, "gone"
        self.prompt_deadline = None
        if self.page in (Page.ENDED, Page.FAILED) or was == "off":
            return []
        if self.ending:
            self.ended_by = "customer"
            self._enter_ended()
            return []
        self._fail(classify_exit(code, stderr, self.was_ready), last_line(stderr))
        return []

    def _fail(self, kind: str, detail: str) -> None:
        self.page = Page.FAILED
        self.failure = kind
        self.failure_detail = detail
        self.notice = None

    # --- the agent's answers and events ---------------------------------------

    def on_reply(self, cmd: str, reply: dict[str, Any]) -> list[Effect]:
        """The answer to an earlier ``Send(cmd)``; a lost agent answers ``ok: false``."""
        ok = bool(reply.get("ok"))
        if cmd == "consent":
            self.consenting = False
            if not ok:
                self.notice = ("notice.consent_failed", {})
                return []
            scope = reply.get("scope") if reply.get("scope") in SCOPES else self.scope_choice
            self.consent = {"time": self._wallclock(), "version": self.terms.version, "scope": scope,
                            "last_scope": scope}
            self.consent_log.append(self.consent)
            self.notice = None
            if self.page is Page.TERMS:
                self.page = Page.SESSION if self.agent_state == "active" else Page.WAITING
            return [Send("credentials"), *self._open_prompt()]
        if cmd == "credentials":
            if ok and isinstance(reply.get("session"), str) and isinstance(reply.get("password"), str):
                self.session_id = reply["session"]
                self.password = reply["password"]
            return []
        if cmd == "status":
            return self._sync_status(reply) if ok else []
        if cmd == "set_scope" and not ok:
            self.notice = ("notice.scope_failed", {})
        return []

    def _sync_status(self, status: dict[str, Any]) -> list[Effect]:
        code = status.get("safety_code")
        if isinstance(code, str) and code:
            self.safety_code = code
        if status.get("state") == "consent_pending" and "consent" in (status.get("awaiting") or []):
            self._consent_needed()
        if status.get("state") == "waiting" and "consent" in status and status["consent"] is None:
            if self.consent is not None:
                # this agent ties a consent to one technician: the next one needs a fresh consent
                self._consent_needed(notice="notice.consent_again")
        return self._on_state(status.get("state"), status.get("scope"))

    def _consent_needed(self, notice: str = "notice.viewer_waiting") -> None:
        """The agent holds no consent now: back to the terms, whatever page was up."""
        self.consent = None
        self.prompt_deadline = None
        if self.page in (Page.WAITING, Page.SESSION):
            self.page = Page.TERMS
            self.notice = (notice, {})
        elif self.page is Page.TERMS and not self.consenting:
            self.notice = (notice, {})

    def on_event(self, event: dict[str, Any]) -> list[Effect]:
        """One event of the subscription (DESIGN §4.4); unknown events are ignored."""
        name = event.get("event")
        if name == "state":
            return self._on_state(event.get("state"), event.get("scope"))
        if name == "safety_code":
            code = event.get("code")
            self.safety_code = code if isinstance(code, str) else None
        elif name == "confirm":
            return self._on_confirm(event)
        elif name == "viewer_left":
            return self._on_viewer_left(str(event.get("reason") or ""))
        elif name == "password_rotated":
            # "used": the password opened a channel and works no more; else three wrong guesses
            used = event.get("reason") == "used"
            if not used or self.page is Page.WAITING:
                self.notice = ("notice.password_used" if used else "notice.password_rotated", {})
            return [Send("credentials")]
        elif name == "ended":
            return self._on_ended(event)
        return []

    def _on_state(self, state: Any, scope: Any) -> list[Effect]:
        if not isinstance(state, str):
            return []
        before, self.agent_state = self.agent_state, state
        if state in ("consent_pending", "active", "reconnecting"):
            self.viewer_seen = True
        if state == "reconnecting":
            self.scope_now = None  # the agent injects nothing while the technician's path is down
        elif state == "active":
            if scope in SCOPES:
                self.scope_now = scope
                if self.consent is not None:
                    self.consent["last_scope"] = scope
            self.prompt_deadline = None
            self.accept_wanted = False
            if self.page in (Page.TERMS, Page.WAITING):
                self.page = Page.SESSION
                self.notice = None
        elif state == "waiting":
            self.scope_now = None
            self.prompt_deadline = None
            self.accept_wanted = False
            if self.notice and self.notice[0] == "notice.viewer_waiting":
                self.notice = None
            if self.page is Page.SESSION:
                self.page = Page.WAITING
            if before not in (None, "waiting", "starting") and self.consent is not None:
                return [Send("status")]  # is our consent still in force for the next technician?
        return []

    def _on_confirm(self, event: dict[str, Any]) -> list[Effect]:
        if event.get("consent_needed"):
            self._consent_needed()
        if event.get("accept_needed"):
            self.accept_wanted = True
            return self._open_prompt()
        return []

    def _open_prompt(self) -> list[Effect]:
        # Asked on the credentials page only, after consent: before it the customer is still
        # reading the terms, and the prompt opens as soon as the consent is recorded.
        if not self.accept_wanted or self.page is not Page.WAITING or self.prompt_deadline is not None:
            return []
        self.prompt_deadline = self._clock() + self.confirm_timeout
        self.prompt_timed_out = False
        return [Attention()]

    def _on_viewer_left(self, reason: str) -> list[Effect]:
        self.safety_code = None
        if reason == "consent_refused":
            self.notice = ("notice.confirm_timeout" if self.prompt_timed_out else "notice.rejected", {})
        elif self.page is Page.SESSION or self.agent_state == "active":
            self.notice = ("notice.viewer_left", {})
        elif self.notice and self.notice[0] == "notice.viewer_waiting":
            self.notice = None
        self.prompt_deadline = None
        self.accept_wanted = False
        return []

    def _on_ended(self, event: dict[str, Any]) -> list[Effect]:
        self.prompt_deadline = None
        if self.page in (Page.ENDED, Page.FAILED):
            return []
        cause = event.get("cause")
        if cause == "link" and not self.viewer_seen:
            self._fail("link_lost", str(event.get("reason") or ""))  # the relay: worth a retry
            return []
        if cause == "link":
            self.ended_by = "link"  # the technician's connection, cut for good
        elif event.get("by") == "remote" or cause == "viewer":
            self.ended_by = "assistant"
        elif cause == "launcher" or self.ending:
            self.ended_by = "customer"
        else:
            self.ended_by = "other"
        self._enter_ended()
        return []

    def _enter_ended(self) -> None:
        self.page = Page.ENDED
        self.session_id = None  # the agent wiped them; so do we
        self.password = None
        self.safety_code = None
        self.notice = None

    # --- the customer's actions --------------------------------------------------

    def act(self, action: str) -> list[Effect]:
        """The customer pressed the control named ``action`` (``View.mnemonics`` lists a page's)."""
        if action.startswith("scope:"):
            scope = action.split(":", 1)[1]
            if self.page is Page.TERMS and scope in SCOPES and not (self.consenting or self.consent_queued):
                self.scope_choice = scope
            return []
        handler = getattr(self, "_act_" + action, None)
        if handler is None:
            raise ValueError(f"unknown action {action!r}")
        return handler()

    def _act_consent(self) -> list[Effect]:
        if self.page is not Page.TERMS or self.consenting or self.consent is not None:
            return []
        if self.agent != "ready":
            self.consent_queued = self.agent == "starting"
            return []
        return self._send_consent()

    def _send_consent(self) -> list[Effect]:
        self.consenting = True
        self.notice = ("notice.consenting", {})
        return [Send("consent", {"scope": self.scope_choice, "terms_version": self.terms.version,
                                 "terms_sha256": self.terms.sha256})]

    def _act_copy_session_id(self) -> list[Effect]:
        if not self.session_id:
            return []
        self.notice = ("notice.copied_session_id", {})
        return [Copy(group_session_id(self.session_id))]

    def _act_copy_password(self) -> list[Effect]:
        if not self.password:
            return []
        self.notice = ("notice.copied_password", {})
        return [Copy(self.password)]

    def _act_allow(self) -> list[Effect]:
        if self.prompt_deadline is None:
            return []
        self.prompt_deadline = None
        self.accept_wanted = False
        return [Send("accept")]

    def _act_reject(self) -> list[Effect]:
        if self.prompt_deadline is None:
            return []
        self.prompt_deadline = None
        self.accept_wanted = False
        self.prompt_timed_out = False
        return [Send("reject")]

    def _act_toggle_view_only(self) -> list[Effect]:
        if self.page is not Page.SESSION or self.ending:
            return []
        consented = self.consent["scope"] if self.consent else self.scope_now
        if self.agent_state != "active":
            return []
        if self.scope_now == "control":
            return [Send("set_scope", {"scope": "view"})]
        if self.scope_now == "view" and consented == "control":
            return [Send("set_scope", {"scope": "control"})]
        return []

    def _act_end_session(self) -> list[Effect]:
        if self.page not in (Page.TERMS, Page.WAITING, Page.SESSION) or self.ending:
            return []
        self.ending = True
        self.prompt_deadline = None
        self.accept_wanted = False
        if self.agent == "ready":
            self.notice = ("notice.ending", {})
            return [Send("terminate", {"reason": END_REASON})]
        self.ended_by = "customer"
        self._enter_ended()
        return [StopAgent(END_REASON)] if self.agent == "starting" else []

    def _act_close(self) -> list[Effect]:
        effects: list[Effect] = [StopAgent(CLOSE_REASON)] if self.agent in ("starting", "ready") else []
        self.agent = "off"
        return effects + [Quit()]

    def _act_retry(self) -> list[Effect]:
        return self._restart() if self.page is Page.FAILED else []

    def _act_new_session(self) -> list[Effect]:
        return self._restart() if self.page is Page.ENDED else []

    def _restart(self) -> list[Effect]:
        stop: list[Effect] = [StopAgent(CLOSE_REASON)] if self.agent in ("starting", "ready") else []
        self._reset_session()
        return stop + self.start()

    def _act_focus_terms(self) -> list[Effect]:
        return []  # the Tk layer moves the focus; nothing changes here

    # --- time -------------------------------------------------------------------

    def tick(self) -> list[Effect]:
        """Called a few times a second: the confirmation countdown and the start timeout."""
        now = self._clock()
        if self.prompt_deadline is not None and now >= self.prompt_deadline:
            self.prompt_deadline = None
            self.accept_wanted = False
            self.prompt_timed_out = True
            return [Send("reject")]
        if self.agent == "starting" and self.started_at is not None and now - self.started_at > START_TIMEOUT:
            self.agent = "gone"
            self._fail("relay", "")
            return [StopAgent(CLOSE_REASON)]
        return []

    @property
    def prompt_seconds_left(self) -> int | None:
        if self.prompt_deadline is None:
            return None
        return max(0, int(self.prompt_deadline - self._clock() + 0.999))

    # --- the view -----------------------------------------------------------------

    def view(self) -> View:
        """What the window shows now."""
        return view_of(self)
