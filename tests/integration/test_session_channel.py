"""One channel for the whole session, with the real commands on Xvfb (issue 10): the end is seen at once by
both sides, local VNC clients come and go over one pairing, the password works once."""
from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest

from tests.integration.test_e2e import _screen, _vncdo, chain_factory  # noqa: F401 (fixture)
from tests.support.processes import stop

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]


def _state(chain) -> str:
    return json.loads(chain.ctl("status").stdout.splitlines()[0])["state"]


def _wait_state(chain, predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate(_state(chain)):
        assert time.monotonic() - started < timeout, f"state still {_state(chain)}"
        time.sleep(0.02)
    return time.monotonic() - started


def _one_line_no_traceback(stderr: list[str]) -> str:
    text = "".join(stderr).strip()
    assert "Traceback" not in text, text
    assert len(text.splitlines()) == 1, text
    return text


def test_terminate_with_no_local_client_ends_the_viewer_within_a_second(chain_factory):
    chain = chain_factory()
    viewer, out, _ = chain.viewer(chain.password())
    out.wait_json(lambda o: o.get("event") == "listening")
    chain.agent_out.wait_json(lambda o: o.get("event") == "state" and o.get("state") == "active", timeout=15)
    started = time.monotonic()
    chain.ctl("terminate")
    assert viewer.wait(10) == 4
    assert time.monotonic() - started < 1.0 + 0.5  # ctl's own start-up is in the 0.5
    _one_line_no_traceback(out.stderr)


@pytest.mark.parametrize("attached", [False, True], ids=["no-client", "client-attached"])
@pytest.mark.parametrize("how", ["reject", "timeout"])
def test_a_refused_confirmation_ends_the_viewer_with_4_and_one_line(chain_factory, tmp_path, how, attached):
    args = ("--confirm-each", "--confirm-timeout", "2" if how == "timeout" else "60")
    chain = chain_factory(agent_args=args)
    viewer, out, port = chain.viewer(chain.password())
    out.wait_json(lambda o: o.get("event") == "listening")
    _wait_state(chain, lambda s: s not in ("waiting", "authenticating"), 15)
    client = None
    if attached:
        import socket

        client = socket.create_connection(("127.0.0.1", port), timeout=5)
    if how == "reject":
        chain.ctl("reject")
    assert viewer.wait(15) == 4
    line = _one_line_no_traceback(out.stderr)
    assert "refused" in line or "did not confirm" in line, line
    if client is not None:
        client.settimeout(5)
        while client.recv(4096):  # the local client is let go too
            pass
        client.close()


def test_a_killed_viewer_ends_the_session_within_a_second_and_the_ledger_has_the_end(chain_factory, tmp_path):
    chain = chain_factory()
    viewer, out, _ = chain.viewer(chain.password())
    out.wait_json(lambda o: o.get("event") == "listening")
    _wait_state(chain, lambda s: s == "active", 15)
    viewer.send_signal(signal.SIGTERM)
    started = time.monotonic()
    chain.agent_out.wait_json(lambda o: o.get("event") == "state" and o.get("state") != "active", timeout=5)
    assert time.monotonic() - started < 1.0
    assert viewer.wait(10) == 0
    chain.agent.wait(10)
    import subprocess
    import sys

    export = subprocess.run([sys.executable, "-m", "agent", "consent-log", "--consent-db",
                             str(tmp_path / "consent.db"), "export"], capture_output=True, text=True, timeout=30)
    rows = [json.loads(line) for line in export.stdout.splitlines() if line.startswith("{")]
    assert rows and rows[-1]["session_end"] is not None, export.stdout


def test_two_local_clients_in_turn_share_one_pairing(chain_factory, xvfb, tmp_path):
    from PIL import Image

    chain = chain_factory()
    viewer, out, port = chain.viewer(chain.password())
    out.wait_json(lambda o: o.get("event") == "listening")
    expected = _screen(xvfb)
    for i in range(2):
        png = tmp_path / f"capture-{i}.png"
        result = _vncdo(port, "capture", str(png))
        assert result.returncode == 0, result.stderr
        captured = np.array(Image.open(png).convert("RGB"))
        assert np.array_equal(captured, expected), f"client {i}: {np.count_nonzero((captured != expected).any(2))}"
    assert viewer.poll() is None
    stop(viewer)
    time.sleep(0.3)
    paired = [line for line in chain.relay_out.stderr if "paired session" in line]
    assert len(paired) == 1, chain.relay_out.stderr


def test_after_keep_waiting_a_used_password_fails_and_a_new_viewer_needs_fresh_consent(chain_factory):
    chain = chain_factory(consent="control", agent_args=("--keep-waiting",))
    first_password = chain.password()
    viewer, out, _ = chain.viewer(first_password)
    out.wait_json(lambda o: o.get("event") == "listening")
    _wait_state(chain, lambda s: s == "active", 15)
    stop(viewer)
    chain.agent_out.wait_json(lambda o: o.get("event") == "password_rotated" and o.get("reason") == "used",
                              timeout=15)
    _wait_state(chain, lambda s: s == "waiting", 15)
    again, again_out, _ = chain.viewer(first_password)
    assert again.wait(30) == 3
    _one_line_no_traceback(again_out.stderr)
    new_password = chain.password()
    assert new_password != first_password
    second, second_out, _ = chain.viewer(new_password)
    second_out.wait_json(lambda o: o.get("event") == "authenticated")
    time.sleep(1.0)
    status = json.loads(chain.ctl("status").stdout.splitlines()[0])
    assert status["state"] != "active" and status["scope"] != "control", status
    chain.ctl("consent", "--scope", "view")
    _wait_state(chain, lambda s: s == "active", 15)
    status = json.loads(chain.ctl("status").stdout.splitlines()[0])
    assert status["scope"] == "view"
