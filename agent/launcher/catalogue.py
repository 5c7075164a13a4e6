"""Every text the customer's window shows, Polish and English side by side, keyed by meaning.

One table, one row per meaning: ``key -> {"pl": ..., "en": ...}``. The window
logic asks for texts by key (``Catalogue.text``); the Tk layer never holds a
literal of its own. A test checks that every row has both languages, the same
``{placeholders}`` in both, and mnemonics that do not clash on one page.

Mnemonics are marked with ``&`` before the letter (``&Zakończ sesję`` shows
"Zakończ sesję" with the Z underlined and answers Alt+Z); ``&&`` is a literal
ampersand. Mnemonic letters are ASCII so Alt+letter works on every keyboard
layout the help desk meets.

Polish is the customer's language and the default; the wording addresses the
customer as "Ty" with the polite capital ("Twój ekran"), avoids gendered past
tense forms ("zapoznałem/zapoznałam"), and calls the technician what the
service terms do: Asystent.
"""
from __future__ import annotations

import os
import string
from typing import Mapping

LANGUAGES = ("pl", "en")
DEFAULT_LANGUAGE = "pl"

TEXTS: dict[str, dict[str, str]] = {
    # --- window titles (one per page: what a screen reader or a task bar names) ---
    "app.name": {
        "pl": "Pomoc zdalna RejNET",
        "en": "RejNET Remote help",
    },
    "title.terms": {
        "pl": "Pomoc zdalna RejNET – zgoda",
        "en": "RejNET Remote help – consent",
    },
    "title.waiting": {
        "pl": "Pomoc zdalna RejNET – dane do połączenia",
        "en": "RejNET Remote help – connection details",
    },
    "title.session": {
        "pl": "Pomoc zdalna RejNET – sesja trwa",
        "en": "RejNET Remote help – session in progress",
    },
    "title.ended": {
        "pl": "Pomoc zdalna RejNET – sesja zakończona",
        "en": "RejNET Remote help – session ended",
    },
    "title.failed": {
        "pl": "Pomoc zdalna RejNET – problem z połączeniem",
        "en": "RejNET Remote help – connection problem",
    },

    # --- before the session: terms and consent ---
    "terms.heading": {
        "pl": "Zanim Asystent zobaczy Twój ekran",
        "en": "Before the assistant sees your screen",
    },
    "terms.intro": {
        "pl": "Przeczytaj warunki usługi i wybierz, na co pozwalasz. Dopóki nie naciśniesz przycisku "
              "„{button}”, nic nie zostanie udostępnione.",
        "en": "Read the terms of the service and choose what you allow. Nothing is shared until you "
              "press “{button}”.",
    },
    "terms.summary": {
        "pl": "W skrócie: Asystent widzi tylko to, na co pozwolisz, a Ty widzisz wszystko, co robi. Połączenie "
              "jest szyfrowane (AES-256). Twoją zgodę przechowujemy 10 lat; identyfikator i hasło sesji oraz "
              "adres IP i MAC komputera – tylko do końca sesji. Sesję możesz zakończyć w każdej chwili. "
              "Klawisz „Pomoc zdalna”, o którym mówią warunki, to w tym oknie przycisk „{button}”.",
        "en": "In short: the assistant sees only what you allow, and you see everything they do. The "
              "connection is encrypted (AES-256). We keep your consent for 10 years; the session ID and "
              "password and this computer's IP and MAC address only until the session ends. You can end the "
              "session at any time. The binding terms below are in Polish; the “Pomoc zdalna” key they "
              "mention is the “{button}” button in this window.",
    },
    "terms.label": {
        "pl": "Warunki &usługi (wersja {version})",
        "en": "Terms of &service (version {version})",
    },
    "consent.statement": {
        "pl": "Zgadzam się na warunki usługi Pomoc zdalna. Pozwalam Asystentowi RejNET – w zakresie wybranym "
              "poniżej – oglądać mój ekran w celu udzielenia mi pomocy technicznej i przetwarzać w tym celu moje "
              "dane (art. 6 ust. 1 lit. a RODO). Zgodę mogę wycofać w każdej chwili, kończąc sesję.",
        "en": "I agree to the terms of the Remote help service. I allow the RejNET assistant, within the scope "
              "chosen below, to see my screen in order to give me technical support, and to process my data for "
              "that purpose (GDPR art. 6(1)(a)). I can withdraw my consent at any time by ending the session.",
    },
    "scope.question": {
        "pl": "Na co pozwalasz Asystentowi?",
        "en": "What may the assistant do?",
    },
    "scope.view.choice": {
        "pl": "&Tylko podgląd",
        "en": "&View only",
    },
    "scope.view.explained": {
        "pl": "Asystent widzi Twój ekran, ale nie może niczego kliknąć ani wpisać.",
        "en": "The assistant sees your screen but cannot click or type anything.",
    },
    "scope.control.choice": {
        "pl": "&Podgląd i sterowanie",
        "en": "View and &control",
    },
    "scope.control.explained": {
        "pl": "Asystent widzi Twój ekran i może używać Twojej myszy i klawiatury. Widzisz wszystko, co robi.",
        "en": "The assistant sees your screen and may use your mouse and keyboard. You see everything they do.",
    },
    "scope.view.name": {
        "pl": "tylko podgląd",
        "en": "view only",
    },
    "scope.control.name": {
        "pl": "podgląd i sterowanie",
        "en": "view and control",
    },
    "action.consent": {
        "pl": "&Wyrażam zgodę",
        "en": "&I consent",
    },
    "action.close": {
        "pl": "&Zamknij",
        "en": "C&lose",
    },

    # --- waiting for the technician: the credentials ---
    "waiting.heading": {
        "pl": "Podaj Asystentowi te dane",
        "en": "Read these to the assistant",
    },
    "waiting.intro": {
        "pl": "Przeczytaj Asystentowi RejNET przez telefon identyfikator i hasło sesji.",
        "en": "Read the session ID and the password to the RejNET assistant over the phone.",
    },
    "credentials.session_id": {
        "pl": "Identyfikator sesji",
        "en": "Session ID",
    },
    "credentials.password": {
        "pl": "Hasło sesji",
        "en": "Session password",
    },
    "credentials.pending": {
        "pl": "…",
        "en": "…",
    },
    "action.copy_session_id": {
        "pl": "Kopiuj &identyfikator",
        "en": "Copy &ID",
    },
    "action.copy_password": {
        "pl": "Kopiuj &hasło",
        "en": "Copy &password",
    },
    "waiting.status": {
        "pl": "Czekamy, aż Asystent się połączy…",
        "en": "Waiting for the assistant to connect…",
    },
    "waiting.scope": {
        "pl": "Twoja zgoda: {scope}.",
        "en": "Your consent: {scope}.",
    },
    "prompt.request": {
        "pl": "Asystent RejNET chce połączyć się z Twoim komputerem.",
        "en": "The RejNET assistant wants to connect to your computer.",
    },
    "prompt.safety_code": {
        "pl": "Kod bezpieczeństwa: {code}. Zapytaj Asystenta, jaki kod widzi u siebie – oba muszą być takie same.",
        "en": "Safety code: {code}. Ask the assistant which code they see – the two must be the same.",
    },
    "prompt.countdown": {
        "pl": "Jeśli nie odpowiesz, połączenie zostanie odrzucone za {seconds} s.",
        "en": "If you do not answer, the connection will be rejected in {seconds} s.",
    },
    "action.allow": {
        "pl": "Zez&wól",
        "en": "&Allow",
    },
    "action.reject": {
        "pl": "&Odrzuć",
        "en": "&Reject",
    },

    # --- notes that appear for a moment, each with the reason ---
    "notice.starting": {
        "pl": "Łączenie z serwerem pomocy zdalnej…",
        "en": "Connecting to the remote help server…",
    },
    "notice.consenting": {
        "pl": "Zapisywanie zgody…",
        "en": "Recording your consent…",
    },
    "notice.consent_failed": {
        "pl": "Nie udało się zapisać zgody, więc nic nie zostało udostępnione. Spróbuj ponownie.",
        "en": "Your consent could not be recorded, so nothing was shared. Please try again.",
    },
    "notice.viewer_waiting": {
        "pl": "Asystent już się połączył. Zobaczy Twój ekran dopiero wtedy, gdy wyrazisz zgodę.",
        "en": "The assistant has connected. They will see your screen only once you consent.",
    },
    "notice.copied_session_id": {
        "pl": "Identyfikator skopiowany do schowka.",
        "en": "Session ID copied to the clipboard.",
    },
    "notice.copied_password": {
        "pl": "Hasło skopiowane do schowka.",
        "en": "Password copied to the clipboard.",
    },
    "notice.password_rotated": {
        "pl": "Ktoś trzy razy podał błędne hasło, więc dla bezpieczeństwa ustaliliśmy nowe. "
              "Podaj Asystentowi nowe hasło.",
        "en": "Someone entered a wrong password three times, so for your safety we made a new one. "
              "Read the new password to the assistant.",
    },
    "notice.password_used": {
        "pl": "Poprzednie hasło zostało już użyte. Jeśli Asystent ma połączyć się ponownie, podaj mu nowe hasło.",
        "en": "The previous password has been used. If the assistant is to connect again, read them the new one.",
    },
    "notice.consent_again": {
        "pl": "Asystent rozłączył się. Jeśli ma połączyć się ponownie, potrzebna jest Twoja nowa zgoda.",
        "en": "The assistant disconnected. If they are to connect again, your consent is needed again.",
    },
    "notice.viewer_left": {
        "pl": "Asystent rozłączył się. Jeśli pomoc nie jest już potrzebna, zakończ sesję.",
        "en": "The assistant disconnected. If you need no more help, end the session.",
    },
    "notice.rejected": {
        "pl": "Połączenie zostało odrzucone.",
        "en": "The connection was rejected.",
    },
    "notice.confirm_timeout": {
        "pl": "Nikt nie odpowiedział na prośbę o połączenie, więc ją odrzuciliśmy.",
        "en": "Nobody answered the connection request, so we rejected it.",
    },
    "notice.scope_failed": {
        "pl": "Nie udało się zmienić uprawnień Asystenta. Jeśli chcesz go zatrzymać, zakończ sesję.",
        "en": "The assistant's permissions could not be changed. To stop the assistant, end the session.",
    },
    "notice.ending": {
        "pl": "Kończenie sesji…",
        "en": "Ending the session…",
    },

    # --- during the session: the bar ---
    "session.watching": {
        "pl": "Asystent RejNET widzi Twój ekran",
        "en": "The RejNET assistant sees your screen",
    },
    "session.controlling": {
        "pl": "Asystent RejNET steruje Twoim komputerem",
        "en": "The RejNET assistant is controlling your computer",
    },
    "session.safety_code": {
        "pl": "Kod bezpieczeństwa: {code} (Asystent widzi ten sam)",
        "en": "Safety code: {code} (the assistant sees the same)",
    },
    "session.reconnecting": {
        "pl": "Połączenie z Asystentem zostało przerwane – łączymy ponownie…",
        "en": "The connection to the assistant was cut – reconnecting…",
    },
    "session.view_only_switch": {
        "pl": "&Tylko podgląd",
        "en": "&View only",
    },
    "action.end_session": {
        "pl": "&Zakończ sesję",
        "en": "&End session",
    },

    # --- after the session ---
    "ended.heading": {
        "pl": "Sesja zakończona",
        "en": "Session ended",
    },
    "ended.by_customer": {
        "pl": "Sesja została zakończona na Twoją prośbę.",
        "en": "You ended the session.",
    },
    "ended.by_assistant": {
        "pl": "Asystent zakończył sesję.",
        "en": "The assistant ended the session.",
    },
    "ended.connection_lost": {
        "pl": "Połączenie z Asystentem zostało przerwane.",
        "en": "The connection to the assistant was lost.",
    },
    "ended.other": {
        "pl": "Sesja dobiegła końca.",
        "en": "The session is over.",
    },
    "ended.kept_heading": {
        "pl": "Co zachowaliśmy",
        "en": "What we kept",
    },
    "ended.kept_consent": {
        "pl": "Potwierdzenie Twojej zgody. Przechowujemy je przez 10 lat, tak jak opisują warunki usługi:",
        "en": "The record of your consent. We keep it for 10 years, as the terms of the service say:",
    },
    "ended.kept_time": {
        "pl": "• kiedy: {time}",
        "en": "• when: {time}",
    },
    "ended.kept_version": {
        "pl": "• wersja warunków usługi: {version}",
        "en": "• version of the terms: {version}",
    },
    "ended.kept_scope": {
        "pl": "• zakres: {scope}",
        "en": "• scope: {scope}",
    },
    "ended.kept_scope_changed": {
        "pl": "• w trakcie sesji zmieniono zakres na: {scope}",
        "en": "• during the session the scope was changed to: {scope}",
    },
    "ended.kept_nothing": {
        "pl": "Nic – zgoda nie została wyrażona.",
        "en": "Nothing – no consent was given.",
    },
    "ended.deleted_heading": {
        "pl": "Co usunęliśmy",
        "en": "What we deleted",
    },
    "ended.deleted": {
        "pl": "Identyfikator i hasło sesji oraz adres IP i adres MAC Twojego komputera.",
        "en": "The session ID and password, and this computer's IP and MAC address.",
    },
    "ended.new_start": {
        "pl": "Jeśli znowu potrzebujesz pomocy, zadzwoń na infolinię i rozpocznij nową sesję – "
              "dostaniesz nowy identyfikator i nowe hasło.",
        "en": "If you need help again, call the help line and start a new session – you will get a new "
              "ID and a new password.",
    },
    "action.new_session": {
        "pl": "&Nowa sesja",
        "en": "&New session",
    },

    # --- when the agent cannot run: plain words, and a way to try again ---
    "failed.heading": {
        "pl": "Nie udało się połączyć",
        "en": "Could not connect",
    },
    "failed.heading_stopped": {
        "pl": "Pomoc zdalna przestała działać",
        "en": "Remote help stopped",
    },
    "failed.relay": {
        "pl": "Nie możemy połączyć się z serwerem pomocy zdalnej. Sprawdź, czy komputer ma dostęp do "
              "internetu, i spróbuj ponownie.",
        "en": "We cannot reach the remote help server. Check that this computer is connected to the "
              "internet, then try again.",
    },
    "failed.link_lost": {
        "pl": "Połączenie z serwerem pomocy zdalnej zostało przerwane. Sprawdź, czy komputer ma dostęp do "
              "internetu, i spróbuj ponownie. Zgodę trzeba będzie wyrazić jeszcze raz.",
        "en": "The connection to the remote help server was lost. Check that this computer is connected to "
              "the internet, then try again. You will be asked for your consent again.",
    },
    "failed.display": {
        "pl": "Nie możemy udostępnić obrazu ekranu tego komputera. Powiedz o tym Asystentowi.",
        "en": "We cannot share this computer's screen. Please tell the assistant.",
    },
    "failed.running": {
        "pl": "Pomoc zdalna jest już uruchomiona w innym oknie. Zamknij tamto okno i spróbuj ponownie.",
        "en": "Remote help is already running in another window. Close that window, then try again.",
    },
    "failed.crashed": {
        "pl": "Program pomocy zdalnej niespodziewanie się zamknął. Spróbuj ponownie.",
        "en": "The remote help program stopped unexpectedly. Please try again.",
    },
    "failed.no_relay": {
        "pl": "Nie wiemy, z którym serwerem pomocy zdalnej się połączyć: brakuje jego adresu. "
              "Powiedz o tym Asystentowi.",
        "en": "We do not know which remote help server to use: its address is missing. "
              "Please tell the assistant.",
    },
    "failed.detail": {
        "pl": "Szczegóły dla Asystenta: {detail}",
        "en": "Details for the assistant: {detail}",
    },
    "action.retry": {
        "pl": "&Spróbuj ponownie",
        "en": "&Try again",
    },

    # --- formats ---
    "format.datetime": {
        "pl": "%d.%m.%Y, godz. %H:%M",
        "en": "%Y-%m-%d %H:%M",
    },
}


def split_mnemonic(label: str) -> tuple[str, int]:
    """``"Zez&wól"`` -> ``("Zezwól", 3)``: the text to show and the index to underline (-1: none)."""
    shown: list[str] = []
    underline = -1
    i = 0
    while i < len(label):
        ch = label[i]
        if ch == "&" and i + 1 < len(label):
            if label[i + 1] == "&":
                shown.append("&")
                i += 2
                continue
            if underline < 0:
                underline = len(shown)
            i += 1
            continue
        shown.append(ch)
        i += 1
    return "".join(shown), underline


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a text expects."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def pick_language(requested: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``--lang`` when given; else English for an ``en*`` locale (LC_ALL, LC_MESSAGES, LANG); else Polish."""
    if requested:
        if requested not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        return requested
    env = os.environ if environ is None else environ
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name, "")
        if value:  # the first one set decides, as in POSIX locale resolution
            return "en" if value.lower().startswith("en") else DEFAULT_LANGUAGE
    return DEFAULT_LANGUAGE


class Catalogue:
    """The texts of one language."""

    def __init__(self, language: str = DEFAULT_LANGUAGE, texts: Mapping[str, Mapping[str, str]] = TEXTS) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        self.language = language
        self._texts = texts

    def raw(self, key: str) -> str:
        """The row's text as written, with any ``&`` mnemonic marker."""
        return self._texts[key][self.language]

    def text(self, key: str, **fields: object) -> str:
        """The text to show: mnemonic marker removed, placeholders filled."""
        shown, _ = split_mnemonic(self.raw(key))
        return shown.format(**fields) if fields else shown

    def label(self, key: str, **fields: object) -> tuple[str, int]:
        """A control's text and underline index (Tk's ``underline=``); the mnemonic precedes any placeholder."""
        shown, index = split_mnemonic(self.raw(key))
        return (shown.format(**fields) if fields else shown), index

    def mnemonic(self, key: str) -> str | None:
        """The Alt+letter of a control, lower case, or None."""
        shown, index = self.label(key)
        return shown[index].lower() if index >= 0 else None
