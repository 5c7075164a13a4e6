"""Every text in both languages; mnemonics that work on every page; the language choice."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from agent.consent.terms import load_terms
from agent.launcher.catalogue import LANGUAGES, TEXTS, Catalogue, pick_language, placeholders, split_mnemonic
from agent.launcher.logic import Launcher
from agent.launcher.model import Page, Terms

LAUNCHER = Path(__file__).resolve().parents[2] / "agent" / "launcher"
PACKAGED = load_terms()


def test_every_text_is_in_both_languages_with_the_same_placeholders():
    for key, row in TEXTS.items():
        assert set(row) == set(LANGUAGES), key
        for language in LANGUAGES:
            assert row[language].strip(), f"{key} is empty in {language}"
        assert placeholders(row["pl"]) == placeholders(row["en"]), key
        marked = {language: "&" in row[language].replace("&&", "") for language in LANGUAGES}
        assert marked["pl"] == marked["en"], f"{key}: a mnemonic in one language only"


def test_mnemonics_are_ascii_letters():
    for key, row in TEXTS.items():
        for language in LANGUAGES:
            shown, index = split_mnemonic(row[language])
            if index >= 0:
                letter = shown[index]
                assert letter.isascii() and letter.isalpha(), f"{key} ({language}): Alt+{letter!r}"


@pytest.mark.parametrize("label, expected", [
    ("&Zakończ sesję", ("Zakończ sesję", 0)),
    ("Zez&wól", ("Zezwól", 3)),
    ("Q&&A", ("Q&A", -1)),
    ("plain", ("plain", -1)),
])
def test_split_mnemonic(label, expected):
    assert split_mnemonic(label) == expected


def _every_page(language: str):
    """A launcher driven through every page (and the prompt), yielding each view."""
    launcher = Launcher(Catalogue(language), Terms(PACKAGED.version, PACKAGED.text, PACKAGED.sha256),
                        relay="h:1", confirm_each=True)
    launcher.start()
    launcher.on_ready({"state": "waiting"})
    yield launcher.view()
    launcher.act("consent")
    launcher.on_reply("consent", {"ok": True, "scope": "control"})
    launcher.on_reply("credentials", {"ok": True, "session": "123456789", "password": "abcdef"})
    yield launcher.view()
    launcher.on_event({"event": "confirm", "consent_needed": False, "accept_needed": True})
    assert launcher.view().prompt is not None
    yield launcher.view()
    launcher.act("allow")
    launcher.on_event({"event": "state", "state": "active", "scope": "control"})
    yield launcher.view()
    launcher.act("end_session")
    launcher.on_event({"event": "ended", "by": "local", "cause": "launcher"})
    yield launcher.view()
    launcher.act("new_session")
    launcher.on_agent_exit(1, "error: cannot reach the relay")
    yield launcher.view()


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_page_has_one_control_per_mnemonic_and_every_control_has_one(language):
    pages = set()
    for view in _every_page(language):
        pages.add(view.page)
        letters = [c.label[c.underline].lower() for c in view.all_controls()]
        if view.terms_label:
            letters.append(view.terms_label[view.terms_underline].lower())
        assert len(letters) == len(set(letters)), f"{view.page}: clashing mnemonics {letters}"
        for control in view.all_controls():
            assert control.underline >= 0, f"{view.page}: {control.label!r} has no mnemonic"
    assert pages == set(Page)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_has_a_title_naming_the_service(language):
    name = Catalogue(language).text("app.name")
    for view in _every_page(language):
        assert view.title.startswith(name)


@pytest.mark.parametrize("environ, expected", [
    ({}, "pl"),
    ({"LANG": "pl_PL.UTF-8"}, "pl"),
    ({"LANG": "en_GB.UTF-8"}, "en"),
    ({"LANG": "en"}, "en"),
    ({"LANG": "de_DE.UTF-8"}, "pl"),
    ({"LC_ALL": "pl_PL.UTF-8", "LANG": "en_US.UTF-8"}, "pl"),
    ({"LC_MESSAGES": "en_US.UTF-8", "LANG": "pl_PL.UTF-8"}, "en"),
    ({"LANG": "C.UTF-8"}, "pl"),
])
def test_language_from_the_locale(environ, expected):
    assert pick_language(None, environ) == expected


def test_lang_option_wins_and_is_checked():
    assert pick_language("en", {"LANG": "pl_PL.UTF-8"}) == "en"
    with pytest.raises(ValueError):
        pick_language("de", {})


def test_no_text_literals_in_the_tk_layer():
    """window.py and styles.py show only catalogue texts: no string literal is a text, title or label."""
    for name in ("window.py", "styles.py"):
        tree = ast.parse((LAUNCHER / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg in ("text", "title", "message", "textvariable") \
                            and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str):
                        pytest.fail(f"{name}:{node.lineno}: literal {keyword.value.value!r}")
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr == "title":
                    for arg in node.args:
                        assert not isinstance(arg, ast.Constant), f"{name}:{node.lineno}: literal title"


def test_the_logic_imports_no_tk():
    for name in ("logic.py", "pages.py", "model.py", "catalogue.py", "theme.py", "config.py", "agent_io.py"):
        tree = ast.parse((LAUNCHER / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            assert not [n for n in names if n.split(".")[0] == "tkinter" or n.endswith((".window", ".styles"))], \
                f"{name} imports {names}"
