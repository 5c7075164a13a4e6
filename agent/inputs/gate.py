"""The consent gate in front of an input backend: input passes only under scope ``control``.

DESIGN §5: "input is dropped unless the scope is control". The session layer
hands every ``lifecycle.SetScope`` action to ``ScopeGate.set_scope``; when the
scope leaves ``control`` the gate releases every key and button the backend
holds, so the technician cannot leave a modifier stuck on the customer's
desktop; when it enters ``control`` the gate lets the backend ``prepare()``
(GNOME creates its virtual keyboard then, not on the technician's first key). Key and pointer events that arrive in any other scope are counted
and dropped, releases included (release_all already let go of everything).
"""
from __future__ import annotations

import logging
from typing import Optional

from agent.inputs.base import InputBackend, InputError

log = logging.getLogger(__name__)

CONTROL = "control"
_SCOPES = (None, "view", CONTROL)


class ScopeGate(InputBackend):
    """Forwards to ``backend`` only while the scope is ``control``; owns the backend (close closes it)."""

    def __init__(self, backend: InputBackend, scope: Optional[str] = None) -> None:
        if scope not in _SCOPES:
            raise ValueError(f"scope must be None, 'view' or 'control', not {scope!r}")
        self._backend = backend
        self._scope = scope
        self._closed = False
        self.dropped = 0  # events refused because the scope was not control
        if scope == CONTROL:
            self._prepare()

    @property
    def scope(self) -> Optional[str]:
        return self._scope

    @property
    def allows_input(self) -> bool:
        return self._scope == CONTROL and not self._closed

    def set_scope(self, scope: Optional[str]) -> None:
        """Apply a scope change (a ``SetScope`` action); leaving ``control`` releases all input."""
        if scope not in _SCOPES:
            raise ValueError(f"scope must be None, 'view' or 'control', not {scope!r}")
        was_control = self._scope == CONTROL
        self._scope = scope
        if was_control and scope != CONTROL and not self._closed:
            log.debug("scope left control: releasing all input")
            self._backend.release_all()
        elif scope == CONTROL and not was_control and not self._closed:
            self._prepare()

    def _prepare(self) -> None:
        try:
            self._backend.prepare()
        except InputError as exc:  # the first event will say so again, to the one who sent it
            log.warning("input backend not ready: %s", exc)

    def key(self, keysym: int, down: bool) -> None:
        if self.allows_input:
            self._backend.key(keysym, down)
        else:
            self.dropped += 1

    def pointer(self, x: int, y: int, button_mask: int) -> None:
        if self.allows_input:
            self._backend.pointer(x, y, button_mask)
        else:
            self.dropped += 1

    def release_all(self) -> None:
        if not self._closed:
            self._backend.release_all()

    def close(self) -> None:
        """Drop the scope, release everything and close the backend. Idempotent."""
        if self._closed:
            return
        self._scope = None
        self._closed = True
        self._backend.close()

    def __repr__(self) -> str:
        return f"ScopeGate({type(self._backend).__name__}, scope={self._scope!r}, dropped={self.dropped})"
