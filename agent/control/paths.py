"""Where the control socket lives, and the checks that make that place private.

The socket is the launcher's handle on a live session (it hands out the
session password), so it must sit in a directory only this user can enter:
created 0700, and refused, never repaired, when it is a symlink, belongs to
someone else or is open to group or others. That holds for ``--control PATH``
too: its directory gets the same treatment.
"""
from __future__ import annotations

import errno
import os
import stat

from agent.errors import RejnetError

SOCKET_NAME = "control.sock"
APP_DIR = "rejnet-agent"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


class ControlSocketError(RejnetError):
    """The control socket cannot be created or reached safely.

    The message names the path and the problem (wrong owner or mode, a symlink,
    another agent already running); fix that or pass another ``--control PATH``.
    """


def default_control_path() -> str:
    """``$XDG_RUNTIME_DIR/rejnet-agent/control.sock``, else ``$XDG_STATE_HOME/rejnet-agent/control.sock``
    (``~/.local/state`` by default).

    Never a fixed name under /tmp: another local user could create it first
    and keep the agent from starting.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime):  # the XDG spec says to ignore a relative value
        return os.path.join(runtime, APP_DIR, SOCKET_NAME)
    state = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, APP_DIR, SOCKET_NAME)


def check_private_dir(directory: str) -> None:
    """Raise ControlSocketError unless ``directory`` is a real directory of ours with mode 0700 or narrower."""
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise ControlSocketError(f"control directory {directory} does not exist") from None
    except OSError as exc:
        raise ControlSocketError(f"cannot inspect control directory {directory}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise ControlSocketError(f"control directory {directory} is a symlink; refusing to use it (remove it)")
    if not stat.S_ISDIR(st.st_mode):
        raise ControlSocketError(f"control directory {directory} is not a directory")
    if st.st_uid != os.geteuid():
        raise ControlSocketError(
            f"control directory {directory} belongs to uid {st.st_uid}, not to us (uid {os.geteuid()}); "
            "refusing to use it")
    if st.st_mode & 0o077:
        raise ControlSocketError(
            f"control directory {directory} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be open to "
            f"group or others (chmod 700 {directory})")


def ensure_private_dir(directory: str, *, create_parents: bool = False) -> None:
    """Create ``directory`` (mode 0700) if it is missing, then check it as check_private_dir does.

    Only the last component is created unless ``create_parents`` (the default
    path under the user's own home): a missing parent of a ``--control`` path
    is an error, so a typo does not grow a tree of directories.
    """
    if create_parents:
        os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise ControlSocketError(
                f"cannot create control directory {directory}: its parent does not exist") from None
        raise ControlSocketError(f"cannot create control directory {directory}: {exc.strerror}") from None
    check_private_dir(directory)


def check_socket_path(path: str) -> str:
    """Return ``path`` made absolute, or raise if a Unix socket cannot have that name."""
    path = os.path.abspath(path)
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlSocketError(
            f"control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter --control PATH")
    return path
