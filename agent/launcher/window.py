"""The Tk skin of the customer's window: draws ``Launcher.view()`` and forwards presses to ``Launcher.act()``.

Nothing here decides anything. The pages, texts, enabled states and the
command each button sends come from ``logic.Launcher``; the agent's messages
come from ``agent_io.AgentLink`` (polled with ``after()``, so Tk is only ever
touched from its own thread). What this layer adds is what only a toolkit can:
widgets, fonts, colours, focus, the clipboard and the window manager hints.

Accessibility (WCAG 2.0 AA): every control is reachable with Tab and shows a
focus ring and a blue fill when focused; every control has a mnemonic (the
underlined letter, Alt+letter); Enter and Space press the focused button;
the terms text scrolls with the arrow and page keys; colours come from
``theme.COLOURS`` (contrast checked by a test); every font is a named font
scaled from the system default (``TkDefaultFont``), and Ctrl+plus / Ctrl+minus
/ Ctrl+0 enlarge, shrink and reset all text.
"""
from __future__ import annotations

import logging
import threading
import time
import tkinter as tk
from tkinter import ttk
from typing import Any, Callable, Sequence

from agent.errors import UsageError
from agent.launcher import theme
from agent.launcher.agent_io import AgentLink
from agent.launcher.styles import Fonts, apply_styles
from agent.launcher.logic import Launcher
from agent.launcher.model import Attention, Copy, Effect, Page, Quit, Send, StartAgent, StopAgent, View

log = logging.getLogger(__name__)

POLL_MS = 50           # how often the agent's messages and the countdown are looked at
WRAP_CHARS = 72        # line length of running text, in average characters of the body font
TERMS_LINES = 12       # preferred height of the terms box; less when the screen is small
STOP_WAIT = 15.0       # seconds the window waits, once closed, for the agent to end
RAISE_EVERY = 1.0      # the in-session bar re-raises itself this often (a desktop may ignore "topmost")
C = theme.COLOURS


class Window:
    """One Tk root showing one Launcher."""

    def __init__(self, root: tk.Tk, model: Launcher, *, agent_command: Sequence[str] | None = None,
                 link_factory: Callable[..., AgentLink] = AgentLink) -> None:
        self.root = root
        self.model = model
        self.agent_command = agent_command
        self.link_factory = link_factory
        self.link: AgentLink | None = None
        self._stoppers: list[threading.Thread] = []
        self._shape: tuple[Any, ...] | None = None
        self._last_view: View | None = None
        self._frame: ttk.Frame | None = None
        self._widgets: dict[str, Any] = {}   # action -> widget, for mnemonics and enabling
        self._vars: dict[str, tk.Variable] = {}
        self._labels: dict[str, ttk.Label] = {}
        self._terms_box: tk.Text | None = None
        self._closing = False
        self._raised_at = 0.0
        self._fonts = Fonts(root)
        apply_styles(root, self._fonts.fonts)
        root.protocol("WM_DELETE_WINDOW", lambda: self.act("close"))
        root.bind_all("<Alt-KeyPress>", self._on_alt)
        for sequence, step in (("<Control-plus>", 1), ("<Control-equal>", 1), ("<Control-KP_Add>", 1),
                               ("<Control-minus>", -1), ("<Control-KP_Subtract>", -1), ("<Control-0>", 0)):
            root.bind_all(sequence, lambda _e, s=step: self._zoom(s))
        for cls in ("TButton", "TCheckbutton", "TRadiobutton"):
            root.bind_class(cls, "<Return>", lambda e: e.widget.invoke())
            root.bind_class(cls, "<KP_Enter>", lambda e: e.widget.invoke())

    # --- fonts and colours ---------------------------------------------------------

    def _zoom(self, step: int) -> None:
        self._fonts.zoom(step)
        apply_styles(self.root, self._fonts.fonts)  # sizes in pixels (check boxes) follow the text
        self._shape = None  # wrap lengths follow the font: rebuild the page
        self._last_view = None
        self.render()

    # --- the loop -----------------------------------------------------------------------

    def start(self) -> None:
        self.apply(self.model.start())
        self.render()
        self.root.after(POLL_MS, self._poll)

    def _poll(self) -> None:
        if self._closing:
            return
        link = self.link
        for message in link.poll() if link is not None else []:
            if self.link is not link or self._closing:
                break  # an effect replaced the agent or closed the window: the rest is moot
            kind, model = message[0], self.model
            if kind == "ready":
                effects = model.on_ready(message[1])
            elif kind == "reply":
                effects = model.on_reply(message[1], message[2])
            elif kind == "event":
                effects = model.on_event(message[1])
            else:  # "exited"
                self.link = None
                effects = model.on_agent_exit(message[1], message[2])
            self.apply(effects)
        if self._closing:
            return
        self.apply(self.model.tick())
        if self._closing:
            return
        self.render()
        view = self._last_view
        if view is not None and (view.page is Page.SESSION or view.prompt is not None):
            now = time.monotonic()
            if now - self._raised_at >= RAISE_EVERY:
                self._raised_at = now
                self.root.lift()  # stacking only: the keyboard focus stays where the customer has it
        self.root.after(POLL_MS, self._poll)

    def act(self, action: str) -> None:
        """The customer pressed a control."""
        if self._closing:
            return
        self.apply(self.model.act(action))
        if not self._closing:
            self.render()

    def apply(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                if self.link is not None:
                    self.link.send(effect.cmd, effect.args)
            elif isinstance(effect, StartAgent):
                self._stop_link(None)
                link = self.link_factory(effect.args, command=self.agent_command)
                try:
                    link.start()
                except (UsageError, OSError) as exc:  # a missing program: say so on the failure page
                    log.error("cannot start the agent: %s", exc)
                    self.apply(self.model.on_agent_exit(None, str(exc)))
                    continue
                self.link = link
            elif isinstance(effect, StopAgent):
                self._stop_link(effect.reason)
            elif isinstance(effect, Copy):
                self.root.clipboard_clear()
                self.root.clipboard_append(effect.text)
            elif isinstance(effect, Attention):
                self.root.deiconify()
                self.root.lift()
                self.root.attributes("-topmost", True)
                self.root.bell()
            elif isinstance(effect, Quit):
                self._quit()

    def _stop_link(self, reason: str | None) -> None:
        link, self.link = self.link, None
        if link is None:
            return
        thread = threading.Thread(target=link.stop, args=(reason,), name="agent-stop", daemon=True)
        thread.start()
        self._stoppers.append(thread)

    def _quit(self) -> None:
        self._closing = True
        self.root.withdraw()
        self.root.update_idletasks()
        self.wait_for_agents()
        self.root.destroy()

    def wait_for_agents(self, timeout: float = STOP_WAIT) -> None:
        """Block until every agent this window started has ended (the window is closing)."""
        if self.link is not None:
            self._stop_link("the customer closed the window")
        for thread in self._stoppers:
            thread.join(timeout)

    # --- drawing ------------------------------------------------------------------------

    def render(self) -> None:
        view = self.model.view()
        if view == self._last_view:
            return
        self._last_view = view
        shape = (view.page, view.prompt is not None)
        if shape != self._shape:
            self._build(view)
            self._update(view)
            self._place_window(view)  # after the texts are in: the size follows them
            self._shape = shape
        else:
            self._update(view)

    def _wrap(self) -> int:
        return self._fonts["body"].measure("n") * WRAP_CHARS

    def _build(self, view: View) -> None:
        if self._frame is not None:
            self._frame.destroy()
        self._widgets, self._vars, self._labels, self._terms_box = {}, {}, {}, None
        bar = view.page is Page.SESSION
        frame = ttk.Frame(self.root, padding=(10, 6) if bar else 20, style="Bar.TFrame" if bar else "TFrame")
        frame.pack(fill="both", expand=True)
        self._frame = frame
        getattr(self, "_build_" + view.page.value)(frame, view)
        first = self._first_focus(view)
        if first is not None:
            first.focus_set()

    def _label(self, parent: Any, name: str, style: str = "TLabel", wrap: bool = True, sticky_fill: bool = False,
               **grid: Any) -> ttk.Label:
        label = ttk.Label(parent, style=style, wraplength=self._wrap() if wrap else 0, justify="left")
        label.grid(sticky="ew" if sticky_fill else "w", **grid)
        self._labels[name] = label
        return label

    def _button(self, parent: Any, control: Any, **grid: Any) -> ttk.Button:
        style = {"primary": "Primary.TButton", "danger": "Danger.TButton"}.get(control.kind, "TButton")
        button = ttk.Button(parent, style=style, command=lambda a=control.action: self.act(a))
        button.grid(**grid)
        self._widgets[control.action] = button
        return button

    def _buttons(self, parent: Any, controls: Sequence[Any], row: int) -> None:
        box = ttk.Frame(parent)
        box.grid(row=row, column=0, sticky="e", pady=(14, 0))
        for column, control in enumerate(controls):
            self._button(box, control, row=0, column=column, padx=(10, 0))

    def _build_terms(self, frame: ttk.Frame, view: View) -> None:
        frame.columnconfigure(0, weight=1)
        self._label(frame, "heading", "Heading.TLabel", row=0, column=0, pady=(0, 6))
        self._label(frame, "intro", row=1, column=0)
        self._label(frame, "summary", "Muted.TLabel", row=2, column=0, pady=(6, 8))
        self._label(frame, "terms_label", "Bold.TLabel", wrap=False, row=3, column=0)
        box = ttk.Frame(frame)
        box.grid(row=4, column=0, sticky="nsew", pady=(2, 8))
        frame.rowconfigure(4, weight=1)
        text = tk.Text(box, wrap="word", height=self._terms_lines(), width=WRAP_CHARS + 4, font=self._fonts["small"],
                       background=C["background"], foreground=C["text"], relief="solid", borderwidth=1,
                       highlightthickness=3, highlightcolor=C["focus"], highlightbackground=C["background"],
                       padx=8, pady=6, takefocus=1, cursor="arrow")
        scroll = ttk.Scrollbar(box, orient="vertical", command=text.yview)
        text.configure(yscrollcommand=scroll.set)
        text.insert("1.0", view.terms_text)
        text.configure(state="disabled")
        text.grid(row=0, column=0, sticky="nsew")
        scroll.grid(row=0, column=1, sticky="ns")
        box.columnconfigure(0, weight=1)
        box.rowconfigure(0, weight=1)
        self._keyboard_scroll(text)
        self._terms_box = text
        self._label(frame, "statement", "Bold.TLabel", row=5, column=0, pady=(0, 6))
        self._label(frame, "question", row=6, column=0)
        self._vars["scope"] = tk.StringVar(self.root)
        row = 7
        for choice in view.choices:
            radio = ttk.Radiobutton(frame, variable=self._vars["scope"], value=choice.action,
                                    command=lambda a=choice.action: self.act(a))
            radio.grid(row=row, column=0, sticky="w", padx=(8, 0))
            self._widgets[choice.action] = radio
            self._label(frame, "explained:" + choice.action, "Muted.TLabel", row=row + 1, column=0, padx=(40, 0))
            row += 2
        self._label(frame, "notice", "Notice.TLabel", row=row, column=0, pady=(8, 0), sticky_fill=True)
        self._buttons(frame, view.controls, row + 1)

    def _build_waiting(self, frame: ttk.Frame, view: View) -> None:
        frame.columnconfigure(0, weight=1)
        self._label(frame, "heading", "Heading.TLabel", row=0, column=0, pady=(0, 6))
        self._label(frame, "intro", row=1, column=0, pady=(0, 10))
        card = ttk.Frame(frame, style="Card.TFrame", padding=16)
        card.grid(row=2, column=0, sticky="ew")
        card.columnconfigure(0, weight=1)
        controls = {control.action: control for control in view.controls}
        for row, (name, action) in enumerate((("session_id", "copy_session_id"), ("password", "copy_password"))):
            self._label(card, name + "_label", "Caption.TLabel", wrap=False, row=2 * row, column=0,
                        pady=(0 if row == 0 else 12, 0))
            self._label(card, name, "Credential.TLabel", wrap=False, row=2 * row + 1, column=0)
            self._button(card, controls[action], row=2 * row + 1, column=1, padx=(16, 0), sticky="e")
        self._label(frame, "status", row=3, column=0, pady=(12, 0))
        self._label(frame, "scope_line", "Muted.TLabel", row=4, column=0)
        row = 5
        if view.prompt is not None:
            box = ttk.Frame(frame, style="Prompt.TFrame", padding=14)
            box.grid(row=row, column=0, sticky="ew", pady=(12, 0))
            box.columnconfigure(0, weight=1)
            self._label(box, "prompt_request", "PromptBold.TLabel", row=0, column=0, columnspan=3)
            self._label(box, "prompt_code", "Prompt.TLabel", row=1, column=0, columnspan=3, pady=(4, 0))
            self._label(box, "prompt_countdown", "Prompt.TLabel", row=2, column=0, columnspan=3, pady=(4, 8))
            for column, control in enumerate(view.prompt.controls):
                self._button(box, control, row=3, column=column + 1, padx=(10, 0), sticky="e")
            row += 1
        self._label(frame, "notice", "Notice.TLabel", row=row, column=0, pady=(10, 0), sticky_fill=True)
        self._buttons(frame, [c for c in view.controls if c.action == "end_session"], row + 1)

    def _build_session(self, frame: ttk.Frame, view: View) -> None:
        # two short rows fit a 1024-pixel screen at 200% text: who is connected and the way out first
        self._label(frame, "status", "Bar.TLabel", wrap=False, row=0, column=0, columnspan=2, padx=(4, 18))
        self._label(frame, "safety_code", "BarCode.TLabel", wrap=False, row=1, column=0, padx=(4, 18))
        assert view.view_only is not None
        self._vars["view_only"] = tk.BooleanVar(self.root)
        switch = ttk.Checkbutton(frame, style="Bar.TCheckbutton", variable=self._vars["view_only"],
                                 command=lambda a=view.view_only.action: self.act(a))
        switch.grid(row=1, column=1, sticky="w", padx=(0, 18))
        self._widgets[view.view_only.action] = switch
        self._button(frame, view.controls[0], row=0, column=2, rowspan=2, sticky="nse")
        self._label(frame, "notice", "Notice.TLabel", row=2, column=0, columnspan=3, pady=(6, 0), sticky_fill=True)
        frame.columnconfigure(1, weight=1)

    def _build_ended(self, frame: ttk.Frame, view: View) -> None:
        frame.columnconfigure(0, weight=1)
        self._label(frame, "heading", "Heading.TLabel", row=0, column=0, pady=(0, 6))
        self._label(frame, "intro", row=1, column=0, pady=(0, 10))
        self._label(frame, "kept_heading", "Bold.TLabel", row=2, column=0)
        for index in range(len(view.kept)):
            self._label(frame, f"kept:{index}", row=3 + index, column=0, padx=(16, 0), pady=(2, 0))
        row = 3 + len(view.kept)
        self._label(frame, "deleted_heading", "Bold.TLabel", row=row, column=0, pady=(10, 0))
        self._label(frame, "deleted", row=row + 1, column=0, padx=(16, 0), pady=(2, 0))
        self._label(frame, "closing", "Muted.TLabel", row=row + 2, column=0, pady=(12, 0))
        self._buttons(frame, view.controls, row + 3)

    def _build_failed(self, frame: ttk.Frame, view: View) -> None:
        frame.columnconfigure(0, weight=1)
        self._label(frame, "heading", "Heading.TLabel", row=0, column=0, pady=(0, 6))
        self._label(frame, "intro", row=1, column=0, pady=(0, 8))
        self._label(frame, "detail", "Muted.TLabel", row=2, column=0)
        self._buttons(frame, view.controls, 3)

    def _keyboard_scroll(self, text: tk.Text) -> None:
        moves = {"<Up>": ("scroll", -1, "units"), "<Down>": ("scroll", 1, "units"),
                 "<Prior>": ("scroll", -1, "pages"), "<Next>": ("scroll", 1, "pages"),
                 "<space>": ("scroll", 1, "pages"), "<Home>": ("moveto", 0.0), "<End>": ("moveto", 1.0),
                 "<Control-Home>": ("moveto", 0.0), "<Control-End>": ("moveto", 1.0)}
        for sequence, how in moves.items():
            text.bind(sequence, lambda _e, h=how: (text.yview(*h), "break")[1])
        text.bind("<Tab>", lambda _e: (text.tk_focusNext().focus_set(), "break")[1])
        text.bind("<Shift-Tab>", lambda _e: (text.tk_focusPrev().focus_set(), "break")[1])
        text.bind("<ISO_Left_Tab>", lambda _e: (text.tk_focusPrev().focus_set(), "break")[1])
        text.bind("<Button-1>", lambda _e: text.focus_set())

    def _terms_lines(self) -> int:
        # keep the whole page on a small screen: the terms box gives up lines first
        line = self._fonts["small"].metrics("linespace")
        spare = self.root.winfo_screenheight() - 26 * self._fonts["body"].metrics("linespace") - 120
        return max(4, min(TERMS_LINES, spare // max(line, 1)))

    def _first_focus(self, view: View) -> Any:
        """Where the keyboard starts: the terms to read, else the main button, never one that ends the session."""
        if view.page is Page.TERMS:
            return self._terms_box
        controls = [c for c in view.all_controls()
                    if c.action in self._widgets and getattr(c, "kind", "normal") != "danger"]
        for control in sorted(controls, key=lambda c: getattr(c, "kind", "normal") != "primary"):
            return self._widgets[control.action]
        return None

    def _place_window(self, view: View) -> None:
        root = self.root
        root.update_idletasks()
        width, height = root.winfo_reqwidth(), root.winfo_reqheight()
        screen_w, screen_h = root.winfo_screenwidth(), root.winfo_screenheight()
        if view.page is Page.SESSION:
            root.resizable(False, False)
            root.geometry(f"{width}x{height}+{max(0, (screen_w - width) // 2)}+0")
        else:
            root.resizable(True, True)
            width, height = min(width, screen_w), min(height, screen_h - 40)
            root.geometry(f"{width}x{height}+{max(0, (screen_w - width) // 2)}+{max(0, (screen_h - height) // 3)}")
        root.minsize(min(width, 320), min(height, 200))

    def _update(self, view: View) -> None:
        root = self.root
        root.title(view.title)
        # the bar, and a pending question, stay above every other window
        root.attributes("-topmost", view.page is Page.SESSION or view.prompt is not None)
        texts = {"heading": view.heading, "intro": view.intro, "summary": view.summary,
                 "terms_label": view.terms_label, "statement": view.statement, "question": view.question,
                 "session_id_label": view.session_id_label, "session_id": view.session_id,
                 "password_label": view.password_label, "password": view.password, "status": view.status,
                 "scope_line": view.scope_line, "safety_code": view.safety_code, "kept_heading": view.kept_heading,
                 "deleted_heading": view.deleted_heading, "deleted": view.deleted, "closing": view.closing,
                 "detail": view.detail, "notice": view.notice}
        if view.prompt is not None:
            texts.update(prompt_request=view.prompt.request, prompt_code=view.prompt.safety_code,
                         prompt_countdown=view.prompt.countdown)
        for index, line in enumerate(view.kept):
            texts[f"kept:{index}"] = line
        for choice in view.choices:
            texts["explained:" + choice.action] = choice.explained
        for name, label in self._labels.items():
            value = texts.get(name, "")
            label.configure(text=value)
            if name == "terms_label":
                label.configure(underline=view.terms_underline)
            if name in ("notice", "detail", "scope_line", "summary"):
                (label.grid if value else label.grid_remove)()
        controls = list(view.controls) + (list(view.prompt.controls) if view.prompt else [])
        for control in controls:
            widget = self._widgets.get(control.action)
            if widget is not None:
                widget.configure(text=control.label, underline=control.underline)
                widget.state(["!disabled"] if control.enabled else ["disabled"])
        for choice in view.choices:
            widget = self._widgets[choice.action]
            widget.configure(text=choice.label, underline=choice.underline)
            widget.state(["!disabled"] if choice.enabled else ["disabled"])
            if choice.selected:
                self._vars["scope"].set(choice.action)
        if view.view_only is not None and view.view_only.action in self._widgets:
            switch = self._widgets[view.view_only.action]
            switch.configure(text=view.view_only.label, underline=view.view_only.underline)
            switch.state(["!disabled"] if view.view_only.enabled else ["disabled"])
            self._vars["view_only"].set(view.view_only.selected)

    def _on_alt(self, event: Any) -> str | None:
        view = self._last_view
        if view is None or self._closing:
            return None
        action = view.mnemonics().get(str(event.keysym).lower())
        if action is None:
            return None
        if action == "focus_terms":
            if self._terms_box is not None:
                self._terms_box.focus_set()
            return "break"
        widget = self._widgets.get(action)
        if widget is not None:
            widget.focus_set()
            widget.invoke()
        return "break"


def open_window(model: Launcher, *, agent_command: Sequence[str] | None = None) -> int:
    """Show the window until the customer closes it; the agent ends with it. Returns the exit code."""
    root = tk.Tk(className="RejnetHelp")
    window = Window(root, model, agent_command=agent_command)
    window.start()
    try:
        root.mainloop()
    finally:
        window.wait_for_agents()
    return 0
