"""Session passwords: alphabet, redaction everywhere, constant-time check, wiping, rotation policy."""
from __future__ import annotations

import copy
import json
import logging
import pickle
import random
from typing import Callable, Iterator

import pytest

import agent.session.password as password_module
from agent.session.lifecycle import (SCOPES, TERMINATORS, Accepted, AuthFailed, AuthSucceeded, ConfirmTimedOut,
                             ConsentRecorded, EmitEvent, IllegalTransition, LifecycleError, LinkFailed, Registered,
                             Rejected, ScopeChanged, SessionMachine, Terminate, ViewerArrived, ViewerLeft)
from agent.session.password import (ALPHABET, LENGTH, MAX_FAILURES, PasswordPolicy, PasswordWipedError, RedactingFilter,
                            SessionPassword, normalize_input)


def _fixed(*values: str) -> Callable[[], SessionPassword]:
    """A generator handing out known values, so tests can grep for them."""
    it: Iterator[str] = iter(values)
    return lambda: SessionPassword(next(it))


def test_alphabet_has_no_lookalikes() -> None:
    assert not set("0o1li") & set(ALPHABET)
    assert set(ALPHABET) <= set("abcdefghijklmnopqrstuvwxyz0123456789")
    assert len(set(ALPHABET)) == len(ALPHABET) == 31


def test_generated_passwords_use_the_alphabet_and_vary() -> None:
    values = [SessionPassword.generate().reveal() for _ in range(2000)]
    assert all(len(v) == LENGTH and set(v) <= set(ALPHABET) for v in values)
    assert len(set(values)) >= 1995  # 31**6 values: collisions in 2000 draws are rare
    assert set("".join(values)) == set(ALPHABET)  # every symbol is reachable


def test_no_textual_form_shows_the_value() -> None:
    pw = SessionPassword("k3mx7q")
    forms = [repr(pw), str(pw), f"{pw}", f"{pw!r}", f"{pw!s}", f"{pw:>30}", "%s %r" % (pw, pw), format(pw),
             repr([pw]), repr({"pw": pw}), str(PasswordPolicy(generate=lambda: pw))]
    assert all("k3mx7q" not in form for form in forms)
    assert repr(pw) == "SessionPassword(******)"
    assert pw.reveal() == "k3mx7q"


def test_cannot_be_pickled_or_copied() -> None:
    pw = SessionPassword("k3mx7q")
    for attempt in (lambda: pickle.dumps(pw), lambda: copy.copy(pw), lambda: copy.deepcopy(pw)):
        with pytest.raises(TypeError) as info:
            attempt()
        assert "k3mx7q" not in str(info.value)


def test_matches_is_exact_and_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    pw = SessionPassword("k3mx7q")
    calls = []
    real = password_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(password_module.hmac, "compare_digest", spy)
    assert pw.matches("k3mx7q")
    assert not pw.matches("k3mx7")
    assert not pw.matches("K3MX7Q")
    assert not pw.matches("")
    assert not pw.matches(None)  # type: ignore[arg-type]
    assert len(calls) == 4  # every string comparison went through compare_digest


def test_wipe_zeroes_and_forgets() -> None:
    pw = SessionPassword("k3mx7q")
    buffer = pw._value
    pw.wipe()
    pw.wipe()
    assert buffer == bytearray(6)
    assert pw.wiped and repr(pw) == "SessionPassword(wiped)"
    assert not pw.matches("k3mx7q")
    with pytest.raises(PasswordWipedError) as info:
        pw.reveal()
    assert "k3mx7q" not in str(info.value)


def test_bad_value_error_does_not_echo_it() -> None:
    with pytest.raises(ValueError) as info:
        SessionPassword("x" * 300 + "k3mx7q")
    assert "k3mx7q" not in str(info.value)
    with pytest.raises(ValueError):
        SessionPassword("")


def test_normalize_input() -> None:
    assert normalize_input(" K3M-x7q ") == "k3mx7q"
    assert normalize_input("k3m x7q\n") == "k3mx7q"


def test_policy_rotates_after_max_failures() -> None:
    policy = PasswordPolicy(generate=_fixed("aaaaaa", "bbbbbb", "cccccc"))
    first = policy.password
    assert first is not None and first.reveal() == "aaaaaa"
    assert [policy.record_failure() for _ in range(MAX_FAILURES - 1)] == [False] * (MAX_FAILURES - 1)
    assert policy.failures == MAX_FAILURES - 1
    assert policy.record_failure() is True
    assert first.wiped and policy.password is not None and policy.password.reveal() == "bbbbbb"
    assert policy.failures == 0 and policy.rotations == 1
    policy.wipe()
    assert policy.password is None
    with pytest.raises(PasswordWipedError):
        policy.record_failure()


def test_redacting_filter_masks_live_passwords(caplog: pytest.LogCaptureFixture) -> None:
    pw = SessionPassword("k3mx7q")
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.DEBUG, logger="test.redaction"):
            logger.info("buffer %r", b"xxk3mx7qxx")
            logger.info("plain k3mx7q text")
            try:
                raise RuntimeError("boom k3mx7q")
            except RuntimeError:
                logger.exception("failed")
    finally:
        caplog.handler.filters.clear()
    assert "k3mx7q" not in caplog.text
    assert caplog.text.count("******") == 4  # two messages, the traceback source line, the exception
    pw.wipe()


# --- the whole machine, with DEBUG logging on ----------------------------------------------

_VALUES = ["k3mx7q", "p9zr2w", "u4vb8n", "h6tf3y", "e7gk2d", "w5nq9s", "c8jr4m", "x2dv6t", "r9ha3u", "n4ys7f",
           "g6ke2b", "t3wu8p", "y7cf5h", "d2mn9a", "s5qb4g", "f8xp3e", "b6rt2v", "q9dw7z", "m3uj5c", "z4gh8k"]


def _random_event(rng: random.Random) -> object:
    return rng.choice([
        lambda: Registered(rng.choice(["123456789", "555000111"])),
        lambda: ViewerArrived(rng.choice(["198.51.100.7:40001", "203.0.113.9:5000"])),
        lambda: AuthFailed(), lambda: AuthFailed(), lambda: AuthSucceeded(),
        lambda: ConsentRecorded(rng.choice(SCOPES), rng.randint(1, 9)),
        lambda: ConsentRecorded("control", 0),
        lambda: Accepted(), lambda: Rejected(), lambda: ConfirmTimedOut(),
        lambda: ScopeChanged(rng.choice(SCOPES)), lambda: ViewerLeft(), lambda: LinkFailed("reset"),
        lambda: Terminate(rng.choice(TERMINATORS + ("bogus",)), "bye") if rng.random() < 0.1 else Accepted(),
    ])()


def test_password_never_in_logs_reprs_errors_or_status(caplog: pytest.LogCaptureFixture) -> None:
    texts: list[str] = []
    issued: list[SessionPassword] = []

    for seed in range(40):
        values = iter(_VALUES)

        def generate() -> SessionPassword:
            pw = SessionPassword(next(values))
            issued.append(pw)
            return pw

        rng = random.Random(seed)
        machine = SessionMachine(confirm_each=seed % 2 == 1, policy=PasswordPolicy(generate=generate))
        with caplog.at_level(logging.DEBUG):
            for _ in range(60):
                event = _random_event(rng)
                texts += [repr(event), str(event)]
                try:
                    actions = machine.handle(event)  # type: ignore[arg-type]
                except IllegalTransition as exc:
                    texts += [str(exc), repr(exc)]
                    continue
                for action in actions:
                    texts += [repr(action), str(action)]
                    if isinstance(action, EmitEvent):
                        texts.append(json.dumps(action.data))
                texts += [repr(machine), json.dumps(machine.status()), repr(machine.password), str(machine.password)]
            machine.handle(Terminate("launcher"))
            texts += [repr(machine), json.dumps(machine.status())]
            with pytest.raises(LifecycleError) as info:
                machine.credentials()
            texts.append(str(info.value))
    texts.append(caplog.text)
    texts += [r.getMessage() for r in caplog.records]
    assert caplog.records, "the machine logs its transitions at DEBUG"
    assert len(issued) > 40, "some runs rotated the password"
    assert all(pw.wiped for pw in issued)
    blob = "\n".join(texts)
    leaked = [v for v in _VALUES if v in blob]
    assert leaked == []


def test_only_credentials_reveals_the_password() -> None:
    machine = SessionMachine(policy=PasswordPolicy(generate=_fixed("k3mx7q")))
    with pytest.raises(LifecycleError, match="not registered yet"):
        machine.credentials()
    machine.handle(Registered("123456789"))
    assert machine.credentials() == {"session": "123456789", "password": "k3mx7q"}
    assert "k3mx7q" not in json.dumps(machine.status())
