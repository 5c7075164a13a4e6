"""What the window logic hands out: the effects to carry out and the view to draw (plain data, no Tk).

``logic.Launcher`` returns lists of effects from each of its methods and a
``View`` from ``view()``; the Tk layer carries the effects out and draws the
view. Both are frozen dataclasses, so a test compares them whole and the skin
redraws only when the view changed.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

SCOPES = ("view", "control")


def group_session_id(session_id: str) -> str:
    """``123456789`` -> ``123 456 789`` (DESIGN §4.1); anything else as it came."""
    if len(session_id) == 9 and session_id.isdigit():
        return " ".join(session_id[i:i + 3] for i in range(0, 9, 3))
    return session_id


class Page(enum.Enum):
    TERMS = "terms"
    WAITING = "waiting"
    SESSION = "session"
    ENDED = "ended"
    FAILED = "failed"


# --- effects: what the I/O and Tk layers carry out ---------------------------

@dataclass(frozen=True)
class StartAgent:
    """Start a new agent process with these arguments (after ``rejnet-agent``), replacing any old one."""
    args: tuple[str, ...]


@dataclass(frozen=True)
class Send:
    """One control-socket command; its reply comes back through ``Launcher.on_reply(cmd, reply)``."""
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StopAgent:
    """End the agent: ``terminate`` with this reason if it still answers, then SIGTERM."""
    reason: str


@dataclass(frozen=True)
class Copy:
    """Put this text on the clipboard."""
    text: str


@dataclass(frozen=True)
class Attention:
    """Raise the window above the others and ring the bell: a decision is waiting."""


@dataclass(frozen=True)
class Quit:
    """Close the window and leave (after the agent has ended)."""


Effect = StartAgent | Send | StopAgent | Copy | Attention | Quit


# --- what the window shows ----------------------------------------------------

@dataclass(frozen=True)
class Control:
    """A button: the action it triggers, its text and underlined mnemonic, whether it can be used now."""
    action: str
    label: str
    underline: int = -1
    enabled: bool = True
    kind: str = "normal"  # normal | primary | danger


@dataclass(frozen=True)
class Choice:
    """A radio button or a switch."""
    action: str
    label: str
    underline: int
    selected: bool
    enabled: bool = True
    explained: str = ""


@dataclass(frozen=True)
class Prompt:
    """The accept/reject question of --confirm-each."""
    request: str
    safety_code: str
    countdown: str
    controls: tuple[Control, ...]


@dataclass(frozen=True)
class View:
    """Everything one page shows; fields a page does not use stay empty."""
    page: Page
    title: str
    heading: str = ""
    intro: str = ""
    notice: str = ""
    controls: tuple[Control, ...] = ()
    # terms
    summary: str = ""
    terms_label: str = ""
    terms_underline: int = -1
    terms_text: str = ""
    statement: str = ""
    question: str = ""
    choices: tuple[Choice, ...] = ()
    # credentials
    session_id_label: str = ""
    session_id: str = ""
    password_label: str = ""
    password: str = ""
    status: str = ""
    scope_line: str = ""
    prompt: Prompt | None = None
    # session bar
    safety_code: str = ""
    view_only: Choice | None = None
    # ended
    kept_heading: str = ""
    kept: tuple[str, ...] = ()
    deleted_heading: str = ""
    deleted: str = ""
    closing: str = ""
    # failed
    detail: str = ""

    def all_controls(self) -> tuple[Control | Choice, ...]:
        """Every control on the page, in reading order."""
        found: list[Control | Choice] = list(self.choices)
        if self.view_only is not None:
            found.append(self.view_only)
        if self.prompt is not None:
            found += self.prompt.controls
        return tuple(found) + self.controls

    def mnemonics(self) -> dict[str, str]:
        """Alt+letter -> action for every usable control (``focus_terms`` moves to the terms text)."""
        found: dict[str, str] = {}
        if self.terms_label and self.terms_underline >= 0:
            found[self.terms_label[self.terms_underline].lower()] = "focus_terms"
        for control in self.all_controls():
            if control.underline >= 0 and control.enabled:
                found.setdefault(control.label[control.underline].lower(), control.action)
        return found


@dataclass(frozen=True)
class Terms:
    """The terms shown and consented to: version name, exact text, SHA-256 of its bytes."""
    version: str
    text: str
    sha256: str
