"""Where the launcher's settings come from: the command line, the environment, a config file.

The relay address is looked up in this order: ``--relay``, ``$REJNET_RELAY``,
then the ``relay`` key of the config file
(``$XDG_CONFIG_HOME/rejnet-agent/help.toml``, by default
``~/.config/rejnet-agent/help.toml``, or ``--config PATH``), so a help desk
can ship a desktop shortcut that is just ``rejnet-help``::

    # ~/.config/rejnet-agent/help.toml
    relay = "pomoc.example.pl:7400"
    confirm_each = false
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping

from agent.errors import UsageError

APP_DIR = "rejnet-agent"
FILE_NAME = "help.toml"
_KEYS = {"relay": str, "confirm_each": bool}


@dataclass(frozen=True)
class Settings:
    relay: str | None
    confirm_each: bool


def default_config_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return os.path.join(base, APP_DIR, FILE_NAME)


def load_config(path: str, *, required: bool = False) -> dict[str, Any]:
    """The file's settings; {} when it is missing and not ``required``. UsageError for a bad file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise UsageError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in data.items():
        kind = _KEYS.get(key)
        if kind is None:
            raise UsageError(f"config file {path}: unknown setting {key!r} (known: {', '.join(_KEYS)})")
        if not isinstance(value, kind):
            raise UsageError(f"config file {path}: {key} must be a {kind.__name__}")
    return data


def resolve(relay: str | None, confirm_each: bool, config_path: str | None,
            environ: Mapping[str, str] | None = None) -> Settings:
    """The settings in force: command line first, then $REJNET_RELAY, then the config file."""
    env = os.environ if environ is None else environ
    config = load_config(config_path or default_config_path(env), required=config_path is not None)
    chosen = relay or env.get("REJNET_RELAY") or config.get("relay") or None
    return Settings(relay=chosen, confirm_each=confirm_each or bool(config.get("confirm_each", False)))
