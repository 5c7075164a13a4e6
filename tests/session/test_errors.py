"""The session's refusals: RefusedErrors whose codes are a wire contract with launchers (DESIGN §4.4)."""
from __future__ import annotations

import pytest

from agent.errors import RefusedError, RejnetError
from agent.session import errors

WIRE_CODES = {
    errors.NoSession: "no_session",
    errors.TermsMismatch: "terms_mismatch",
    errors.SessionOver: "ended",
    errors.ConsentNotRecorded: "ledger",
    errors.NotAllowed: "not_allowed",
    errors.CommandUnknown: "unknown_command",
}


@pytest.mark.parametrize("cls", list(WIRE_CODES))
def test_each_refusal_carries_its_wire_code_and_one_line(cls):
    exc = cls("the session has ended")
    assert isinstance(exc, RefusedError) and isinstance(exc, RejnetError)
    assert exc.code == WIRE_CODES[cls]
    assert exc.message == "the session has ended"
    assert str(exc) == f"{WIRE_CODES[cls]}: the session has ended"  # what the CLI prints, as before
    assert exc.exit_code == 1
    assert cls.__doc__ and "\n" not in cls.__doc__.strip().splitlines()[0]


def test_a_refusal_may_name_its_own_code():
    exc = RefusedError("not now", code="busy")
    assert (exc.code, exc.message, str(exc)) == ("busy", "not now", "busy: not now")
    assert RefusedError.code == "refused"  # the class default is untouched
    assert RefusedError("x").code == "refused"


def test_every_session_refusal_is_listed():
    defined = {obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, RefusedError) and obj is not RefusedError}
    assert defined == set(WIRE_CODES)
