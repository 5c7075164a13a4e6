"""The five pages as data: from the launcher's state to the ``View`` the Tk layer draws.

One function per page; each reads the launcher's state (``logic.Launcher``)
and the catalogue, and decides every text, every control and whether it can
be used now. No Tk and no state of its own.
"""
from __future__ import annotations

import time
from typing import Any

from agent.launcher.model import SCOPES, Choice, Control, Page, Prompt, View, group_session_id


def view_of(launcher: Any) -> View:
    return _PAGES[launcher.page](launcher)


def _control(launcher: Any, action: str, key: str, enabled: bool = True, kind: str = "normal") -> Control:
    label, underline = launcher.t.label(key)
    return Control(action, label, underline, enabled, kind)


def _notice(launcher: Any) -> str:
    if launcher.notice is None:
        return ""
    key, fields = launcher.notice
    return launcher.t.text(key, **fields)


def _scope_name(launcher: Any, scope: str | None) -> str:
    return launcher.t.text(f"scope.{scope}.name") if scope in SCOPES else ""


def _terms(launcher: Any) -> View:
    t = launcher.t
    label, underline = t.label("terms.label", version=launcher.terms.version)
    busy = launcher.consenting or launcher.consent_queued
    choices = tuple(
        Choice(f"scope:{scope}", *t.label(f"scope.{scope}.choice"), selected=launcher.scope_choice == scope,
               enabled=not busy, explained=t.text(f"scope.{scope}.explained"))
        for scope in SCOPES)
    return View(
        page=Page.TERMS, title=t.text("title.terms"), heading=t.text("terms.heading"),
        intro=t.text("terms.intro", button=t.text("action.consent")),
        summary=t.text("terms.summary", button=t.text("action.consent")),
        terms_label=label, terms_underline=underline, terms_text=launcher.terms.text,
        statement=t.text("consent.statement"), question=t.text("scope.question"), choices=choices,
        notice=t.text("notice.consenting") if launcher.consent_queued else _notice(launcher),
        controls=(_control(launcher, "consent", "action.consent", enabled=not busy, kind="primary"),
                  _control(launcher, "close", "action.close")))


def _waiting(launcher: Any) -> View:
    t = launcher.t
    pending = t.text("credentials.pending")
    prompt = None
    seconds = launcher.prompt_seconds_left
    if seconds is not None:
        prompt = Prompt(request=t.text("prompt.request"),
                        safety_code=t.text("prompt.safety_code", code=launcher.safety_code or "–"),
                        countdown=t.text("prompt.countdown", seconds=seconds),
                        controls=(_control(launcher, "allow", "action.allow", kind="primary"),
                                  _control(launcher, "reject", "action.reject")))
    scope = launcher.consent["scope"] if launcher.consent else None
    session_id, password = launcher.session_id, launcher.password
    return View(
        page=Page.WAITING, title=t.text("title.waiting"), heading=t.text("waiting.heading"),
        intro=t.text("waiting.intro"), notice=_notice(launcher),
        session_id_label=t.text("credentials.session_id"),
        session_id=group_session_id(session_id) if session_id else pending,
        password_label=t.text("credentials.password"), password=password or pending,
        status=t.text("waiting.status"),
        scope_line=t.text("waiting.scope", scope=_scope_name(launcher, scope)) if scope else "",
        prompt=prompt,
        controls=(_control(launcher, "copy_session_id", "action.copy_session_id", enabled=bool(session_id)),
                  _control(launcher, "copy_password", "action.copy_password", enabled=bool(password)),
                  _control(launcher, "end_session", "action.end_session", enabled=not launcher.ending,
                           kind="danger")))


def _session(launcher: Any) -> View:
    t = launcher.t
    controlling = launcher.scope_now == "control"
    reconnecting = launcher.agent_state == "reconnecting"
    consented = launcher.consent["scope"] if launcher.consent else launcher.scope_now
    label, underline = t.label("session.view_only_switch")
    switch = Choice("toggle_view_only", label, underline, selected=not controlling,
                    enabled=consented == "control" and not launcher.ending and not reconnecting)
    status = "session.reconnecting" if reconnecting else "session.controlling" if controlling else "session.watching"
    return View(
        page=Page.SESSION, title=t.text("title.session"), status=t.text(status),
        safety_code=t.text("session.safety_code", code=launcher.safety_code or "–"),
        view_only=switch, notice=_notice(launcher),
        controls=(_control(launcher, "end_session", "action.end_session", enabled=not launcher.ending,
                           kind="danger"),))


def _ended(launcher: Any) -> View:
    t = launcher.t
    reason = {"customer": "ended.by_customer", "assistant": "ended.by_assistant",
              "link": "ended.connection_lost"}.get(launcher.ended_by or "", "ended.other")
    kept: list[str] = []
    if not launcher.consent_log:
        kept.append(t.text("ended.kept_nothing"))
    else:
        kept.append(t.text("ended.kept_consent"))
    for consent in launcher.consent_log:
        when = time.strftime(t.raw("format.datetime"), time.localtime(consent["time"]))
        kept += [t.text("ended.kept_time", time=when), t.text("ended.kept_version", version=consent["version"]),
                 t.text("ended.kept_scope", scope=_scope_name(launcher, consent["scope"]))]
        if consent["last_scope"] != consent["scope"]:
            kept.append(t.text("ended.kept_scope_changed", scope=_scope_name(launcher, consent["last_scope"])))
    return View(
        page=Page.ENDED, title=t.text("title.ended"), heading=t.text("ended.heading"), intro=t.text(reason),
        kept_heading=t.text("ended.kept_heading"), kept=tuple(kept),
        deleted_heading=t.text("ended.deleted_heading"), deleted=t.text("ended.deleted"),
        closing=t.text("ended.new_start"),
        controls=(_control(launcher, "new_session", "action.new_session", enabled=bool(launcher.relay)),
                  _control(launcher, "close", "action.close", kind="primary")))


def _failed(launcher: Any) -> View:
    t = launcher.t
    kind = launcher.failure or "crashed"
    stopped = kind in ("link_lost", "crashed") and launcher.was_ready
    detail = launcher.failure_detail
    return View(
        page=Page.FAILED, title=t.text("title.failed"),
        heading=t.text("failed.heading_stopped" if stopped else "failed.heading"), intro=t.text(f"failed.{kind}"),
        detail=t.text("failed.detail", detail=detail) if detail else "",
        controls=(_control(launcher, "retry", "action.retry", enabled=bool(launcher.relay), kind="primary"),
                  _control(launcher, "close", "action.close")))


_PAGES = {Page.TERMS: _terms, Page.WAITING: _waiting, Page.SESSION: _session, Page.ENDED: _ended,
          Page.FAILED: _failed}
