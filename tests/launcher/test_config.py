"""Where the relay comes from: --relay, then $REJNET_RELAY, then the config file; and the command line."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent.commands import help_main
from agent.errors import UsageError
from agent.launcher.cli import add_arguments, build_model
from agent.launcher.config import default_config_path, load_config, resolve

ROOT = Path(__file__).resolve().parents[2]


def test_relay_precedence(tmp_path):
    config = tmp_path / "help.toml"
    config.write_text('relay = "from-file:7400"\nconfirm_each = true\n')
    assert resolve("cli:1", False, str(config), {"REJNET_RELAY": "env:2"}).relay == "cli:1"
    assert resolve(None, False, str(config), {"REJNET_RELAY": "env:2"}).relay == "env:2"
    settings = resolve(None, False, str(config), {})
    assert settings.relay == "from-file:7400" and settings.confirm_each


def test_default_config_file_follows_xdg(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nonexistent"}
    assert default_config_path(env) == str(tmp_path / "rejnet-agent" / "help.toml")
    assert default_config_path({"HOME": "/home/k", "XDG_CONFIG_HOME": "relative"}) == \
        "/home/k/.config/rejnet-agent/help.toml"
    (tmp_path / "rejnet-agent").mkdir()
    (tmp_path / "rejnet-agent" / "help.toml").write_text('relay = "xdg:7400"\n')
    assert resolve(None, False, None, env).relay == "xdg:7400"


def test_a_missing_default_file_is_fine_a_missing_named_one_is_not(tmp_path):
    assert resolve(None, False, None, {"XDG_CONFIG_HOME": str(tmp_path)}).relay is None
    with pytest.raises(UsageError, match="does not exist"):
        resolve(None, False, str(tmp_path / "nope.toml"), {})


@pytest.mark.parametrize("text, message", [
    ("relay = 7400\n", "must be a str"),
    ("relya = 'x:1'\n", "unknown setting"),
    ("relay = \n", "not valid TOML"),
])
def test_bad_config_files_are_named(tmp_path, text, message):
    path = tmp_path / "help.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_config(str(path))


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rejnet-help"] == "agent.commands:help_main"


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as stop:
        help_main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for option in ("--relay", "--lang", "--confirm-each", "--config"):
        assert option in out


def test_no_display_is_exit_code_5(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert help_main(["--relay", "127.0.0.1:1"]) == 5
    assert "display" in capsys.readouterr().err


def test_the_model_follows_lang_and_locale(monkeypatch, tmp_path):
    import argparse

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    assert build_model(parser.parse_args(["--relay", "h:1"])).t.language == "en"
    assert build_model(parser.parse_args(["--relay", "h:1", "--lang", "pl"])).t.language == "pl"
    monkeypatch.setenv("LANG", "pl_PL.UTF-8")
    model = build_model(parser.parse_args(["--relay", "h:1", "--confirm-each", "--confirm-timeout", "5"]))
    assert model.t.language == "pl" and model.confirm_each and model.confirm_timeout == 5
