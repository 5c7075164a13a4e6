"""The console's sans-IO parts: who may connect (guard), what the page is told (state), pixel messages (frames)."""
from __future__ import annotations

import struct

import numpy as np

from agent.viewer.web import frames, guard
from agent.viewer.web.state import ConsoleState, clean_text, group_session_id

TOKEN = guard.new_token()
PORT = 43210
OK_HEADERS = {"Host": f"127.0.0.1:{PORT}", "Origin": f"http://127.0.0.1:{PORT}"}


def check(path=None, headers=None, peer="127.0.0.1", websocket=True):
    return guard.check(path=path if path is not None else f"/{TOKEN}/ws", headers=OK_HEADERS if headers is None else headers,
                       peer=peer, port=PORT, token=TOKEN, websocket=websocket)


def test_the_right_request_passes_and_names_its_resource():
    assert check() == (None, "ws")
    assert check(path=f"/{TOKEN}/", headers={"Host": f"localhost:{PORT}"}, websocket=False) == (None, "")
    assert check(path=f"/{TOKEN}/console.js?x=1", websocket=False) == (None, "console.js")


def test_missing_or_wrong_token_is_not_found():
    for path in ("/", "/ws", f"/{TOKEN[:-1]}/ws", f"/{TOKEN}x/ws", f"/x{TOKEN}/ws", "//" + TOKEN + "/ws", "ws"):
        refusal, resource = check(path=path)
        assert refusal == guard.NOT_FOUND and resource == "", path


def test_foreign_host_origin_or_peer_is_refused():
    assert check(headers={"Host": f"evil.example:{PORT}", "Origin": f"http://evil.example:{PORT}"})[0].status == 403
    assert check(headers={"Host": f"127.0.0.1:{PORT + 1}", "Origin": OK_HEADERS["Origin"]})[0].status == 403
    assert check(headers={"Origin": OK_HEADERS["Origin"]})[0].status == 403  # no Host at all
    assert check(headers={"Host": OK_HEADERS["Host"], "Origin": "http://evil.example"})[0].status == 403
    assert check(headers={"Host": OK_HEADERS["Host"], "Origin": "null"})[0].status == 403
    assert check(headers={"Host": OK_HEADERS["Host"]})[0].status == 403  # a WebSocket without an Origin
    assert check(peer="192.168.1.5")[0].status == 403
    assert check(peer=None)[0].status == 403
    assert check(peer="::1")[0] is None


def test_refusal_reasons_never_carry_the_token():
    for refusal in (check(path="/nope/ws")[0], check(peer="10.0.0.1")[0], check(headers={"Host": "x:1"})[0]):
        assert TOKEN not in refusal.reason


def test_tokens_are_long_and_fresh():
    assert len(guard.new_token()) >= 40 and guard.new_token() != guard.new_token()


def test_state_follows_the_bridge_events_and_ignores_unknown_ones():
    s = ConsoleState(group_session_id("123456789"))
    assert s.session == "123 456 789" and s.state == "connecting"
    assert s.apply({"event": "authenticated", "safety_code": "0042"}) and s.safety_code == "0042"
    assert not s.apply({"event": "local_viewer", "connected": True})
    assert not s.apply({"event": "something_new", "x": 1}) and not s.apply({"event": "__init__"})
    assert not s.apply({"no": "event"}) and not s.apply("junk")  # type: ignore[arg-type]
    assert s.input_allowed is False  # nothing on screen yet
    assert s.pixels(1024, 768) and s.state == "active" and s.input_allowed  # scope not reported: the agent gates
    assert s.apply({"event": "state", "state": "active", "scope": "view"})
    assert s.scope == "view" and not s.input_allowed
    assert s.apply({"event": "scope", "scope": "control"}) and s.input_allowed
    assert s.apply({"event": "reconnecting", "reason": "link\x1b[31m cut"})
    assert s.state == "reconnecting" and s.reason == "link [31m cut" and not s.input_allowed
    assert s.apply({"event": "resumed"}) and s.state == "active" and s.reason is None
    assert s.apply({"event": "link", "rtt_ms": 51.26, "bandwidth_kbit": 900.0})
    assert s.snapshot()["link"] == {"rtt_ms": 51.3, "kbit_s": 900.0, "fps": None}
    assert s.measured(rtt_ms=40.0, fps=12.0) and s.rtt_ms == 40.0 and s.fps == 12.0
    assert s.apply({"event": "ended", "reason": "ended by the customer"})
    assert s.state == "ended" and s.reason == "ended by the customer" and not s.input_allowed
    assert not s.apply({"event": "resumed"}) and not s.end("later") and s.reason == "ended by the customer"


def test_agent_state_events_map_to_the_page_states():
    s = ConsoleState("1")
    s.pixels(10, 10)
    s.apply({"event": "state", "state": "reconnecting", "scope": None})
    assert s.state == "reconnecting" and s.scope is None and s.scope_reported
    s.apply({"event": "state", "state": "active", "scope": "control"})
    assert s.state == "active" and s.scope == "control"
    s.apply({"event": "state", "state": "ended", "scope": None})
    assert s.state == "active" and not s.input_allowed  # input stops; the reason comes with the end itself
    s.end("the customer's agent ended the session: done")
    assert s.state == "ended" and s.reason.endswith("done")


def test_clean_text_drops_control_characters_and_bounds_length():
    assert clean_text("a\nb\tc\u202ed") == "a b c d"
    assert len(clean_text("x" * 1000)) == 200


def _unpack(message: bytes) -> tuple:
    return struct.unpack(">BHHHH", message[:9])


def test_frames_first_everything_then_only_changes_in_rgba():
    fb = np.zeros((50, 70, 4), np.uint8)
    fb[..., 0], fb[..., 1], fb[..., 2] = 10, 20, 30  # BGR
    dirty = frames.Dirty()
    first = dirty.take(fb)
    assert first[0] == frames.pack_size(70, 50)
    assert _unpack(first[1]) == (frames.RECT, 0, 0, 70, 50)
    pixels = np.frombuffer(first[1][9:], np.uint8).reshape(50, 70, 4)
    assert (pixels[0, 0] == [30, 20, 10, 255]).all()
    assert not dirty and dirty.take(fb) == []
    dirty.add([(5, 6, 7, 8), (60, 40, 20, 20)])  # the second one is clipped to the screen
    out = dirty.take(fb)
    assert [_unpack(m) for m in out] == [(1, 5, 6, 7, 8), (1, 60, 40, 10, 10)]
    assert all(len(m) == 9 + m_w * m_h * 4 for m, (_, _, _, m_w, m_h) in zip(out, map(_unpack, out)))
    dirty.add([(i, 0, 1, 1) for i in range(frames.MAX_RECTS + 1)])
    assert [_unpack(m) for m in dirty.take(fb)] == [(1, 0, 0, frames.MAX_RECTS + 1, 1)]
    dirty.mark_all()
    assert dirty.take(fb)[0] == frames.pack_size(70, 50)


def test_large_rectangles_go_in_strips():
    parts = frames.strips((0, 0, 2000, 1000))
    assert sum(h for _, _, _, h in parts) == 1000 and all(2000 * h * 4 <= frames.STRIP_BYTES for *_, h in parts)


def test_another_local_viewer_taking_the_screen_shows_and_stops_input():
    s = ConsoleState("1")
    s.pixels(10, 10)
    assert not s.apply({"event": "local_viewer", "connected": True, "peer": "('127.0.0.1', 5)"})  # own peer unknown
    assert s.attached("('127.0.0.1', 40000)") is False and s.input_allowed  # nothing to show changed
    assert not s.apply({"event": "local_viewer", "connected": True, "peer": "('127.0.0.1', 40000)"})  # itself
    assert s.apply({"event": "local_viewer", "connected": True, "peer": "('127.0.0.1', 40001)"})
    assert s.elsewhere and s.snapshot()["elsewhere"] and not s.input_allowed and s.state == "active"
    assert not s.apply({"event": "local_viewer", "connected": False, "peer": "('127.0.0.1', 40000)"})
    assert s.taken_by == "('127.0.0.1', 40001)"
    s.apply({"event": "local_viewer", "connected": False, "peer": "('127.0.0.1', 40001)"})
    assert s.taken_by is None and s.elsewhere  # gone: the console may take it back, until then not shown here
    assert s.attached("('127.0.0.1', 40002)") and not s.elsewhere and s.input_allowed
