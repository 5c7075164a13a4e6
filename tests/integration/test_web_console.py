"""The technician's console in a real browser: Chromium (Debian's) driven by Playwright, through
the real relay, agent (on Xvfb) and rejnet-viewer --web, each a subprocess.

The browser runs headed on an Xvfb display of its own, never on the customer's screen.
REJNET_SCREENSHOT_DIR=docs writes the README's screenshot (docs/technician-console.png).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.integration.test_e2e import Chain, _screen
from tests.support.processes import Lines, stop
from tests.support.tools import need

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 20_000
PSNR_MIN = 30.0
CUSTOMER_END_LIMIT = 1.0  # seconds from the agent's end to the page showing it


def _need_browser() -> None:
    need("xterm", "xdotool", "xsetroot")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _env(display: str) -> dict[str, str]:
    return dict(os.environ, DISPLAY=display)


class Desk:
    """The customer's desktop: a coloured root, a file listing, and an xterm whose typing lands in a file."""

    def __init__(self, display: str, tmp_path: Path) -> None:
        self.display = display
        self.typed = tmp_path / "typed.txt"
        self.typed.write_text("")
        env = _env(display)
        subprocess.run(["xsetroot", "-solid", "#204a87"], env=env, check=False)
        self.procs = [
            subprocess.Popen(["xterm", "-geometry", "80x20+20+20", "+bc", "-e", "sh", "-c",
                              "ls -la /usr/bin | head -30; sleep 600"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(["xterm", "-geometry", "50x12+560+420", "+bc", "-e", "sh", "-c",
                              f"cat > {self.typed}"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        time.sleep(1.5)
        # no window manager: the keyboard focus follows the pointer, so park it on the typing xterm
        subprocess.run(["xdotool", "mousemove", "700", "500"], env=env, check=True)

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)


@pytest.fixture
def desk(xvfb, tmp_path):
    _need_browser()
    d = Desk(xvfb, tmp_path)
    yield d
    d.close()


@pytest.fixture
def browser(xvfb_factory):
    _need_browser()
    from playwright.sync_api import sync_playwright

    display = xvfb_factory(1400, 1000)
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display  # Playwright starts Chromium with our environment
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=False,
                                   args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                yield b
            finally:
                b.close()
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old


@pytest.fixture
def chains(xvfb, tmp_path):
    made: list[Chain] = []

    def make(**kwargs) -> Chain:
        c = Chain(tmp_path, xvfb, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def _web_viewer(chain: Chain) -> tuple[subprocess.Popen, Lines, str]:
    proc, out, _ = chain.viewer(chain.password(), "--web", "--no-browser")
    url = out.wait_json(lambda o: o.get("event") == "web", timeout=30)["url"]
    return proc, out, url


def _open(browser, url: str, locale: str = "en-US"):
    page = browser.new_page(viewport={"width": 1300, "height": 900}, locale=locale)
    page.goto(url)
    page.wait_for_function("() => window.rejnetConsole && window.rejnetConsole.paints > 0", timeout=WAIT_MS)
    page.wait_for_function("() => document.getElementById('state').dataset.state === 'active'", timeout=WAIT_MS)
    return page


def _canvas_shot(page, tmp_path: Path, name: str) -> np.ndarray:
    from PIL import Image

    path = tmp_path / name
    page.locator("#screen").screenshot(path=str(path), animations="disabled")
    return np.array(Image.open(path).convert("RGB"))


def _settled_screen(display: str) -> np.ndarray:
    """A grab of the customer's display once two grabs in a row agree."""
    last = _screen(display)
    for _ in range(20):
        time.sleep(0.2)
        now = _screen(display)
        if np.array_equal(now, last):
            return now
        last = now
    return last


def _wait_text(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.1)
    return text in path.read_text()


def _type(page, text: str) -> None:
    page.evaluate("document.getElementById('screen').focus()")
    page.keyboard.type(text, delay=20)
    page.keyboard.press("Enter")


def test_console_shows_the_screen_and_types_only_in_control(desk, browser, chains, tmp_path):
    from PIL import Image

    chain = chains(consent="view")
    viewer, out, url = _web_viewer(chain)
    page = _open(browser, url)

    # the session's facts
    assert page.text_content("#session").replace(" ", "") == chain.session
    auth = next(json.loads(l) for l in out.seen if '"authenticated"' in l)
    assert page.text_content("#safety") == auth["safety_code"]
    assert page.text_content("#end") == "End session"

    # the screen, 1:1: the canvas as the browser shows it against a grab of the display
    expected = _settled_screen(desk.display)
    page.uncheck("#fit")
    page.wait_for_timeout(1000)
    shown = _canvas_shot(page, tmp_path, "one-to-one.png")
    # the element's box may sit on a fractional pixel: its screenshot can be a row or column larger,
    # starting with the page's pixel above or left of it
    h, w = expected.shape[:2]
    assert 0 <= shown.shape[0] - h <= 1 and 0 <= shown.shape[1] - w <= 1
    one_to_one = max(psnr(shown[dy:dy + h, dx:dx + w], expected)
                     for dy in range(shown.shape[0] - h + 1) for dx in range(shown.shape[1] - w + 1))
    print(f"PSNR 1:1 {one_to_one:.1f} dB")
    assert one_to_one >= PSNR_MIN
    # fitted to the window: compared with the grab scaled to the canvas's size on the page
    page.set_viewport_size({"width": 1000, "height": 700})  # smaller than the screen: fit shrinks it
    page.check("#fit")
    page.wait_for_timeout(500)
    shown = _canvas_shot(page, tmp_path, "fit.png")
    assert shown.shape[0] < expected.shape[0]
    scaled = np.array(Image.fromarray(expected).resize((shown.shape[1], shown.shape[0]), Image.BILINEAR))
    fit_psnr = psnr(shown, scaled)
    print(f"PSNR fitted {fit_psnr:.1f} dB")
    assert fit_psnr >= PSNR_MIN

    # view: typing in the page reaches nothing
    _type(page, "seen-not-typed")
    assert not _wait_text(desk.typed, "seen-not-typed", 2.0), "keys reached the customer's xterm in scope view"

    # control: the page says so, and the same typing lands in the xterm
    chain.ctl("consent", "--scope", "control")
    _type(page, "typed-in-the-browser")
    assert _wait_text(desk.typed, "typed-in-the-browser", 10.0), desk.typed.read_text()
    page.wait_for_function("() => document.getElementById('scope').dataset.scope === 'control'", timeout=WAIT_MS)
    assert page.is_visible("#notice")

    # the figures are live
    page.wait_for_function("() => document.getElementById('rtt').textContent !== '–'", timeout=WAIT_MS)
    page.wait_for_function("() => document.getElementById('fps').textContent !== '–'", timeout=WAIT_MS)

    shot_dir = os.environ.get("REJNET_SCREENSHOT_DIR")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.wait_for_timeout(1500)  # the typed line echoed on the customer's screen, figures refreshed
    page.screenshot(path=str(tmp_path / "technician-console.png"))
    if shot_dir:
        page.screenshot(path=str(Path(shot_dir) / "technician-console.png"))

    # End session: the agent's session ends, the page says so
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#end")
    page.wait_for_function("() => document.getElementById('state').dataset.state === 'ended'", timeout=WAIT_MS)
    chain.agent_out.wait_json(lambda o: o.get("event") == "ended", timeout=15)
    assert viewer.wait(15) == 0
    assert "ended" in page.text_content("#notice")
    page.close()


def test_customer_end_shows_on_the_page_with_the_reason(desk, browser, chains):
    chain = chains(consent="control")
    viewer, out, url = _web_viewer(chain)
    page = _open(browser, url, locale="pl-PL")
    assert page.text_content("#end") == "Zakończ sesję"
    page.evaluate("""() => { window.endedAt = null;
        new MutationObserver(() => { if (!window.endedAt && document.getElementById('state').dataset.state === 'ended')
            window.endedAt = performance.now(); }).observe(document.getElementById('state'), {attributes: true}); }""")
    asked = time.monotonic()
    page_asked = page.evaluate("performance.now()")
    chain.ctl("terminate", "--reason", "customer is done")
    answered = time.monotonic()
    page.wait_for_function("() => window.endedAt !== null", timeout=WAIT_MS)
    ended_at = page.evaluate("window.endedAt")
    from_terminate = (ended_at - page_asked) / 1000 - (answered - asked)
    print(f"customer end on the page {from_terminate * 1000:.0f} ms after `ctl terminate` returned "
          f"({(ended_at - page_asked):.0f} ms after it was started)")
    assert "customer is done" in page.text_content("#notice")
    assert page.text_content("#state") == "zakończone"
    assert from_terminate < CUSTOMER_END_LIMIT
    assert viewer.wait(15) == 4
    page.close()


def _hold_vnc(host: str, port: int, got_screen: threading.Event, stop_holding: threading.Event) -> None:
    """A second VNC viewer on the bridge's --listen port (ours, in a thread): connects, gets a screen,
    stays until told to go or until the bridge closes it."""
    import asyncio

    from agent.viewer.rfb_client import open_rfb

    async def main() -> None:
        client = await open_rfb(host, port, timeout=30)
        await client.update(incremental=False, timeout=30)
        got_screen.set()
        while not stop_holding.is_set() and client.error is None:
            await asyncio.sleep(0.05)
        await client.close()

    asyncio.run(main())


def test_a_vnc_viewer_taking_the_screen_over_shows_on_the_page(desk, browser, chains, tmp_path):
    chain = chains(consent="control")
    viewer, out, url = _web_viewer(chain)
    page = _open(browser, url)
    listening = next(json.loads(line) for line in out.seen if '"listening"' in line)
    elsewhere = "() => !document.getElementById('elsewhere').hidden"
    here = "() => document.getElementById('elsewhere').hidden && !document.getElementById('screen').classList.contains('noinput')"

    # a VNC viewer on this computer takes the screen (the newest window wins): the page says so
    got, go = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_vnc, args=(listening["host"], listening["port"], got, go), daemon=True)
    holder.start()
    assert got.wait(30)
    page.wait_for_function(elsewhere, timeout=WAIT_MS)
    assert "another VNC viewer" in page.text_content("#elsewhere")
    assert page.evaluate("document.getElementById('screen').classList.contains('noinput')")
    page.screenshot(path=str(tmp_path / "console-elsewhere.png"))
    # "Show it here": the page has the screen and the keyboard again, the other viewer is closed
    page.click("#here")
    page.wait_for_function(here, timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "console-taken-back.png"))
    holder.join(15)
    assert not holder.is_alive(), "the bridge kept the other viewer attached"
    _type(page, "typed-after-taking-it-back")
    assert _wait_text(desk.typed, "typed-after-taking-it-back", 10.0), desk.typed.read_text()

    # taken again; when that viewer closes, the page gets the screen back by itself
    got, go = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_vnc, args=(listening["host"], listening["port"], got, go), daemon=True)
    holder.start()
    assert got.wait(30)
    page.wait_for_function(elsewhere, timeout=WAIT_MS)
    go.set()
    holder.join(15)
    page.wait_for_function(here, timeout=WAIT_MS)
    page.close()
    stop(viewer)
