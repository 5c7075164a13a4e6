"""The window logic without a display: every page, what each button sends, what the agent's events do."""
from __future__ import annotations

import time

import pytest

from agent.consent.terms import load_terms
from agent.launcher.catalogue import Catalogue
from agent.launcher.logic import CONFIRM_TIMEOUT, START_TIMEOUT, Launcher, agent_arguments, classify_exit
from agent.launcher.model import Attention, Copy, Page, Quit, Send, StartAgent, StopAgent, Terms

PACKAGED = load_terms()
TERMS = Terms(PACKAGED.version, PACKAGED.text, PACKAGED.sha256)
READY = {"event": "ready", "control": "/run/x/control.sock", "session": "123456789", "state": "waiting"}
CREDENTIALS = {"id": 2, "ok": True, "session": "123456789", "password": "k3mx7q"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(lang: str = "pl", relay: str | None = "relay.example:7400", **kwargs) -> tuple[Launcher, Clock]:
    clock = Clock()
    launcher = Launcher(Catalogue(lang), TERMS, relay=relay, clock=clock, wallclock=lambda: 1_700_000_000.0,
                        **kwargs)
    return launcher, clock


def sends(effects) -> list[tuple[str, dict]]:
    return [(e.cmd, e.args) for e in effects if isinstance(e, Send)]


def ready(launcher: Launcher) -> list:
    effects = launcher.start()
    assert isinstance(effects[0], StartAgent)
    return launcher.on_ready(READY)


def consented(scope: str = "control", **kwargs) -> tuple[Launcher, Clock]:
    launcher, clock = make(**kwargs)
    ready(launcher)
    launcher.act(f"scope:{scope}")
    launcher.act("consent")
    launcher.on_reply("consent", {"ok": True, "recorded": True, "consent_row": 1, "scope": scope})
    launcher.on_reply("credentials", CREDENTIALS)
    return launcher, clock


def active(scope: str = "control", **kwargs) -> tuple[Launcher, Clock]:
    launcher, clock = consented(scope, **kwargs)
    launcher.on_event({"event": "safety_code", "code": "4821"})
    launcher.on_event({"event": "viewer", "address": "relay"})
    launcher.on_event({"event": "state", "state": "consent_pending", "scope": None})
    launcher.on_event({"event": "state", "state": "active", "scope": scope})
    return launcher, clock


# --- before consent ------------------------------------------------------------------------

def test_start_shows_the_terms_and_starts_the_agent_with_json_and_the_relay():
    launcher, _ = make()
    effects = launcher.start()
    assert effects == [StartAgent(("--json", "--relay", "relay.example:7400"))]
    view = launcher.view()
    assert view.page is Page.TERMS
    assert view.terms_text == PACKAGED.text
    assert "pomoc-zdalna-v1" in view.terms_label
    assert [c.label for c in view.choices] == ["Tylko podgląd", "Podgląd i sterowanie"]
    assert view.choices[0].selected, "view only is the default: the customer widens the scope on purpose"
    assert view.controls[0].label == "Wyrażam zgodę"
    assert "„Wyrażam zgodę”" in view.intro


def test_nothing_but_status_is_sent_before_the_consent_button():
    launcher, clock = make()
    effects = ready(launcher)
    # a technician who already has the ID tries to connect while the customer reads
    effects += launcher.on_event({"event": "safety_code", "code": "1234"})
    effects += launcher.on_event({"event": "viewer", "address": "relay"})
    effects += launcher.on_event({"event": "state", "state": "consent_pending", "scope": None})
    effects += launcher.on_event({"event": "confirm", "address": "relay", "consent_needed": True,
                                  "accept_needed": False})
    effects += launcher.act("scope:control")
    clock.now += 30
    effects += launcher.tick()
    assert sends(effects) == [("status", {})]
    view = launcher.view()
    assert view.page is Page.TERMS
    assert "czeka" in view.notice or "zgod" in view.notice
    consent = launcher.act("consent")
    assert sends(consent) == [("consent", {"scope": "control", "terms_version": PACKAGED.version,
                                           "terms_sha256": PACKAGED.sha256})]


def test_consent_pressed_before_the_agent_is_ready_is_sent_when_it_is():
    launcher, _ = make()
    launcher.start()
    assert launcher.act("consent") == []
    assert not launcher.view().controls[0].enabled, "the button shows it was pressed"
    assert not any(c.enabled for c in launcher.view().choices), "the scope cannot change under a pending consent"
    effects = launcher.on_ready(READY)
    assert sends(effects) == [("status", {}), ("consent", {"scope": "view", "terms_version": PACKAGED.version,
                                                            "terms_sha256": PACKAGED.sha256})]


def test_a_refused_consent_stays_on_the_terms_and_says_nothing_was_shared():
    launcher, _ = make()
    ready(launcher)
    launcher.act("consent")
    effects = launcher.on_reply("consent", {"ok": False, "error": {"code": "ledger", "message": "disk full"}})
    assert effects == []
    view = launcher.view()
    assert view.page is Page.TERMS
    assert "nic nie zostało udostępnione" in view.notice
    assert view.controls[0].enabled, "the customer can try again"


# --- credentials -----------------------------------------------------------------------------

def test_consent_leads_to_the_credentials_grouped_with_copy_buttons():
    launcher, _ = make()
    ready(launcher)
    launcher.act("consent")
    effects = launcher.on_reply("consent", {"ok": True, "recorded": True, "consent_row": 7, "scope": "view"})
    assert sends(effects) == [("credentials", {})]
    assert launcher.view().page is Page.WAITING
    assert launcher.view().session_id == "…"
    launcher.on_reply("credentials", CREDENTIALS)
    view = launcher.view()
    assert (view.session_id, view.password) == ("123 456 789", "k3mx7q")
    assert view.session_id_label == "Identyfikator sesji" and view.password_label == "Hasło sesji"
    assert launcher.act("copy_session_id") == [Copy("123 456 789")]
    assert "skopiowany" in launcher.view().notice
    assert launcher.act("copy_password") == [Copy("k3mx7q")]
    assert "tylko podgląd" in view.scope_line


def test_a_rotated_password_replaces_the_shown_one_with_a_note_why():
    launcher, _ = consented()
    for _ in range(3):
        launcher.on_event({"event": "auth_failed"})
    effects = launcher.on_event({"event": "password_rotated"})
    assert sends(effects) == [("credentials", {})]
    launcher.on_reply("credentials", {**CREDENTIALS, "password": "zz99aa"})
    view = launcher.view()
    assert view.password == "zz99aa"
    assert "trzy razy" in view.notice and "nowe" in view.notice


# --- the session ---------------------------------------------------------------------------

def test_active_shows_the_bar_with_who_is_connected_and_the_safety_code():
    launcher, _ = active("control")
    view = launcher.view()
    assert view.page is Page.SESSION
    assert view.status == "Asystent RejNET steruje Twoim komputerem"
    assert view.safety_code.startswith("Kod bezpieczeństwa: 4821")
    assert view.view_only is not None and not view.view_only.selected and view.view_only.enabled
    assert [c.label for c in view.controls] == ["Zakończ sesję"]


def test_the_view_only_switch_sends_set_scope_and_follows_the_agent():
    launcher, _ = active("control")
    assert sends(launcher.act("toggle_view_only")) == [("set_scope", {"scope": "view"})]
    assert not launcher.view().view_only.selected, "the switch shows the agent's scope, not a hope"
    launcher.on_event({"event": "state", "state": "active", "scope": "view"})
    view = launcher.view()
    assert view.view_only.selected
    assert view.status == "Asystent RejNET widzi Twój ekran"
    assert sends(launcher.act("toggle_view_only")) == [("set_scope", {"scope": "control"})]


def test_with_view_only_consent_the_switch_is_on_and_locked():
    launcher, _ = active("view")
    view = launcher.view()
    assert view.view_only.selected and not view.view_only.enabled
    assert launcher.act("toggle_view_only") == []


def test_a_viewer_that_leaves_brings_back_the_credentials_with_a_note():
    """An agent that keeps the consent for the next technician (status still names it)."""
    launcher, _ = active("control")
    launcher.on_event({"event": "viewer_left", "reason": "viewer disconnected"})
    effects = launcher.on_event({"event": "state", "state": "waiting", "scope": None})
    assert sends(effects) == [("status", {})], "is the consent still in force?"
    launcher.on_reply("status", {"ok": True, "state": "waiting", "scope": None, "consent": "control"})
    view = launcher.view()
    assert view.page is Page.WAITING
    assert view.password == "k3mx7q"
    assert "rozłączył" in view.notice


def test_an_agent_that_ties_consent_to_one_technician_gets_a_fresh_one():
    """An agent whose password works once and whose consent ends with the technician (DESIGN §4.2 point 5)."""
    launcher, _ = make()
    ready(launcher)
    launcher.act("consent")
    launcher.on_reply("consent", {"ok": True, "scope": "view"})
    launcher.on_reply("credentials", CREDENTIALS)
    launcher.on_event({"event": "viewer", "address": "relay"})
    launcher.on_event({"event": "state", "state": "consent_pending", "scope": None})
    effects = launcher.on_event({"event": "password_rotated", "reason": "used"})
    assert sends(effects) == [("credentials", {})]
    launcher.on_event({"event": "state", "state": "active", "scope": "view"})
    launcher.on_reply("credentials", {**CREDENTIALS, "password": "n3wpas"})
    assert launcher.view().page is Page.SESSION and launcher.view().notice == ""
    launcher.on_event({"event": "viewer_left", "reason": "viewer disconnected"})
    launcher.on_event({"event": "state", "state": "waiting", "scope": None})
    launcher.on_reply("status", {"ok": True, "state": "waiting", "scope": None, "consent": None})
    view = launcher.view()
    assert view.page is Page.TERMS, "nothing is shared with the next technician before a new consent"
    assert "nowa zgoda" in view.notice
    assert sends(launcher.act("consent"))[0][0] == "consent"
    launcher.on_reply("consent", {"ok": True, "scope": "view"})
    assert launcher.view().page is Page.WAITING and launcher.view().password == "n3wpas"
    launcher.act("end_session")
    launcher.on_event({"event": "ended", "by": "local", "cause": "launcher"})
    kept = launcher.view().kept
    assert sum(line.startswith("• zakres") for line in kept) == 2, "both consents are on the after page"


def test_a_technician_asking_without_a_consent_in_force_sends_the_customer_to_the_terms():
    launcher, _ = consented("view")
    launcher.on_event({"event": "confirm", "address": "relay", "consent_needed": True, "accept_needed": False})
    view = launcher.view()
    assert view.page is Page.TERMS and "zgod" in view.notice
    assert launcher.consent is None


def test_a_cut_path_says_reconnecting_and_locks_the_switch():
    launcher, _ = active("control")
    launcher.on_event({"event": "reconnecting", "reason": "connection lost"})
    launcher.on_event({"event": "state", "state": "reconnecting", "scope": None})
    view = launcher.view()
    assert view.page is Page.SESSION
    assert "łączymy ponownie" in view.status
    assert not view.view_only.enabled and launcher.act("toggle_view_only") == []
    launcher.on_event({"event": "resumed"})
    launcher.on_event({"event": "state", "state": "active", "scope": "control"})
    assert launcher.view().status == "Asystent RejNET steruje Twoim komputerem"


def test_a_technician_lost_for_good_ends_the_session_not_in_the_failure_page():
    launcher, _ = active("view")
    launcher.on_event({"event": "state", "state": "reconnecting", "scope": None})
    launcher.on_event({"event": "ended", "by": "local", "cause": "link", "reason": "connection lost"})
    view = launcher.view()
    assert view.page is Page.ENDED
    assert view.intro == "Połączenie z Asystentem zostało przerwane."


def test_status_saying_active_shows_the_bar_whatever_page_was_up():
    launcher, _ = make()
    ready(launcher)
    launcher.on_reply("status", {"ok": True, "state": "active", "scope": "view", "safety_code": "0042"})
    view = launcher.view()
    assert view.page is Page.SESSION
    assert "0042" in view.safety_code


# --- ending ----------------------------------------------------------------------------------

def test_end_session_sends_terminate_and_the_ended_page_says_what_was_kept_and_deleted():
    launcher, _ = active("control")
    launcher.on_event({"event": "state", "state": "active", "scope": "view"})
    assert sends(launcher.act("end_session")) == [("terminate", {"reason": "ended by the customer"})]
    assert launcher.act("end_session") == [], "pressed twice, sent once"
    launcher.on_event({"event": "viewer_left", "reason": "ended by the customer"})
    launcher.on_event({"event": "state", "state": "ended", "scope": None})
    launcher.on_event({"event": "ended", "by": "local", "cause": "launcher", "reason": "ended by the customer"})
    view = launcher.view()
    assert view.page is Page.ENDED
    assert view.heading == "Sesja zakończona"
    assert view.intro == "Sesja została zakończona na Twoją prośbę."
    kept = "\n".join(view.kept)
    assert "10 lat" in view.kept[0]
    assert time.strftime("%d.%m.%Y, godz. %H:%M", time.localtime(1_700_000_000)) in kept, "the consent time"
    assert PACKAGED.version in kept and "zakres: podgląd i sterowanie" in kept
    assert "zmieniono zakres na: tylko podgląd" in kept, "the scope change is part of what was kept"
    assert "hasło" in view.deleted and "IP" in view.deleted and "MAC" in view.deleted
    assert launcher.session_id is None and launcher.password is None
    assert "nową sesję" in view.closing


def test_ended_by_the_technician_says_so():
    launcher, _ = active("view")
    launcher.on_event({"event": "ended", "by": "remote", "cause": "viewer", "reason": "closed"})
    assert launcher.view().intro == "Asystent zakończył sesję."


def test_new_session_starts_a_new_agent_and_asks_for_consent_again():
    launcher, _ = active("view")
    launcher.on_event({"event": "ended", "by": "local", "cause": "launcher", "reason": "x"})
    launcher.on_agent_exit(0, "")
    assert launcher.view().page is Page.ENDED, "a normal exit after the end is not a failure"
    effects = launcher.act("new_session")
    assert effects == [StartAgent(("--json", "--relay", "relay.example:7400"))]
    assert launcher.view().page is Page.TERMS
    assert launcher.consent is None


def test_closing_the_window_stops_the_agent_then_quits():
    launcher, _ = active("view")
    effects = launcher.act("close")
    assert effects == [StopAgent("the customer closed the window"), Quit()]
    assert launcher.on_agent_exit(0, "") == []


def test_closing_after_the_agent_is_gone_just_quits():
    launcher, _ = make()
    launcher.start()
    launcher.on_agent_exit(1, "error: cannot reach the relay at x:1: refused")
    assert launcher.act("close") == [Quit()]


# --- failures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("code, stderr, ready_before, kind", [
    (1, "error: cannot reach the relay at 127.0.0.1:1: Connect call failed", False, "relay"),
    (1, "error: lost the relay connection and could not re-register", True, "link_lost"),
    (5, "error: the display :9 cannot be captured", False, "display"),
    (1, "error: another agent is running on /run/user/1/rejnet-agent/control.sock", False, "running"),
    (-9, "", True, "crashed"),
    (1, "Traceback ...\nImportError: boom", False, "crashed"),
])
def test_why_the_agent_ended(code, stderr, ready_before, kind):
    assert classify_exit(code, stderr, ready_before) == kind


def test_an_unreachable_relay_says_so_in_plain_words_and_offers_to_retry():
    launcher, _ = make()
    launcher.start()
    launcher.on_agent_exit(1, "error: cannot reach the relay at 127.0.0.1:1: Connect call failed")
    view = launcher.view()
    assert view.page is Page.FAILED
    assert "internetu" in view.intro
    assert "cannot reach the relay" in view.detail and not view.detail.count("error:")
    assert view.controls[0].label == "Spróbuj ponownie" and view.controls[0].enabled
    assert launcher.act("retry") == [StartAgent(("--json", "--relay", "relay.example:7400"))]
    assert launcher.view().page is Page.TERMS


def test_an_agent_that_dies_during_the_session_shows_the_failure_page():
    launcher, _ = active("control")
    launcher.on_agent_exit(-9, "")
    view = launcher.view()
    assert view.page is Page.FAILED
    assert view.heading == "Pomoc zdalna przestała działać"


def test_a_lost_relay_link_ends_in_the_failure_page_not_the_ended_one():
    launcher, _ = consented()
    launcher.on_event({"event": "ended", "by": "local", "cause": "link", "reason": "link failed: relay lost"})
    assert launcher.view().page is Page.FAILED
    assert "przerwane" in launcher.view().intro


def test_no_relay_configured_fails_without_starting_anything():
    launcher, _ = make(relay=None)
    assert launcher.start() == []
    view = launcher.view()
    assert view.page is Page.FAILED
    assert "adresu" in view.intro
    assert not view.controls[0].enabled


def test_an_agent_that_never_gets_ready_is_stopped():
    launcher, clock = make()
    launcher.start()
    clock.now += START_TIMEOUT + 1
    assert launcher.tick() == [StopAgent("the customer closed the window")]
    assert launcher.view().page is Page.FAILED


# --- --confirm-each ------------------------------------------------------------------------------

def test_confirm_each_is_passed_to_the_agent_with_a_later_backstop():
    args = agent_arguments("h:1", True, 30)
    assert args[:3] == ("--json", "--relay", "h:1")
    assert args[3:] == ("--confirm-each", "--confirm-timeout", "40")


def confirm_request(launcher: Launcher) -> list:
    launcher.on_event({"event": "safety_code", "code": "7305"})
    launcher.on_event({"event": "viewer", "address": "relay"})
    launcher.on_event({"event": "state", "state": "consent_pending", "scope": None})
    return launcher.on_event({"event": "confirm", "address": "relay", "consent_needed": False,
                              "accept_needed": True})


def test_the_prompt_shows_the_safety_code_and_allow_sends_accept():
    launcher, clock = consented("view", confirm_each=True)
    assert confirm_request(launcher) == [Attention()]
    prompt = launcher.view().prompt
    assert prompt is not None and "7305" in prompt.safety_code
    assert str(int(CONFIRM_TIMEOUT)) in prompt.countdown
    clock.now += 10
    assert str(int(CONFIRM_TIMEOUT) - 10) in launcher.view().prompt.countdown
    assert sends(launcher.act("allow")) == [("accept", {})]
    assert launcher.view().prompt is None


def test_no_answer_rejects_and_says_so():
    launcher, clock = consented("view", confirm_each=True)
    confirm_request(launcher)
    clock.now += CONFIRM_TIMEOUT - 0.5
    assert launcher.tick() == []
    clock.now += 1
    assert sends(launcher.tick()) == [("reject", {})]
    assert launcher.tick() == [], "rejected once"
    launcher.on_event({"event": "viewer_left", "reason": "consent_refused"})
    launcher.on_event({"event": "state", "state": "waiting", "scope": None})
    view = launcher.view()
    assert view.prompt is None and "Nikt nie odpowiedział" in view.notice


def test_a_timeout_never_accepts():
    launcher, clock = consented("view", confirm_each=True)
    confirm_request(launcher)
    effects = []
    for _ in range(200):
        clock.now += 1
        effects += launcher.tick()
    assert ("accept", {}) not in sends(effects)


def test_reject_sends_reject():
    launcher, _ = consented("view", confirm_each=True)
    confirm_request(launcher)
    assert sends(launcher.act("reject")) == [("reject", {})]
    launcher.on_event({"event": "viewer_left", "reason": "consent_refused"})
    assert launcher.view().notice == "Połączenie zostało odrzucone."


def test_a_request_during_the_terms_waits_for_the_consent_then_asks():
    launcher, _ = make(confirm_each=True)
    ready(launcher)
    launcher.on_event({"event": "confirm", "address": "relay", "consent_needed": True, "accept_needed": True})
    assert launcher.view().prompt is None and launcher.view().page is Page.TERMS
    launcher.act("consent")
    effects = launcher.on_reply("consent", {"ok": True, "scope": "view"})
    assert Attention() in effects
    assert launcher.view().prompt is not None


# --- English ---------------------------------------------------------------------------------------

def test_the_same_flow_in_english():
    launcher, _ = active("control", lang="en")
    view = launcher.view()
    assert view.status == "The RejNET assistant is controlling your computer"
    assert view.controls[0].label == "End session"
    launcher.act("end_session")
    launcher.on_event({"event": "ended", "by": "local", "cause": "launcher", "reason": "x"})
    view = launcher.view()
    assert view.heading == "Session ended" and view.kept_heading == "What we kept"


def test_unknown_action_is_a_programming_error():
    launcher, _ = make()
    with pytest.raises(ValueError):
        launcher.act("launch_missiles")
