"""The quickstart notebook in a real browser: Debian's Chromium driven by Playwright
over CDP, JupyterLab on 127.0.0.1 with a token, everything in a temporary folder and
stopped by process group.

Runs the notebook through JupyterLab's own "Run All Cells", then checks what a user
sees: the player and the timeline render (no "Error displaying widget"), the video
decodes, a click on a lane seeks the player, hovering a lane shows a tooltip, a
key steps one frame, the layout fits a 1024 px window with the file browser open,
and the saved notebook carries the static pictures. Screenshots go to
``$REKOLAB_SCREENSHOTS`` (default ``out/browser/`` in the repository).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import MEDIA, MODELS, REPO, SHARED

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytest.importorskip("playwright.sync_api")
pytest.importorskip("jupyterlab")
pytest.importorskip("anywidget")
if not Path(CHROMIUM).exists():
    pytest.skip("needs Debian's chromium (apt-get install -y chromium; .ci/run installs it)", allow_module_level=True)

WIDGET = "application/vnd.jupyter.widget-view+json"
SHOTS = Path(os.environ.get("REKOLAB_SCREENSHOTS") or REPO / "out" / "browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a process we started, and its children, by its process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a temporary root that holds a copy of the quickstart."""
    if not (MEDIA / "video" / "short_hamilton_clip.mp4").exists() or not (MODELS / "insightface").exists():
        pytest.skip(f"needs the shared media and models in {SHARED}")
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", root / "notebooks" / "quickstart.ipynb")
    port, token = free_port(), "rekolab-test-token"
    env = {**os.environ, "REKOLAB_SHARED": str(SHARED), "REKOLAB_MODEL_DIR": str(MODELS),
           "REKOLAB_NOTEBOOK_OUT": str(root / "out"), "REKOLAB_HOME": str(root / "home"),
           "REKOLAB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "JUPYTER_CONFIG_DIR": str(root / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / "lab-settings"), "JUPYTERLAB_WORKSPACES_DIR": str(root / "ws")}
    # No news or update checks (offline), and no "would you like to get notified" toast.
    settings = root / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"checkForUpdates": False, "fetchNews": "false", "doNotDisturbMode": True}))
    # Every cell stays in the page (JupyterLab 4 may virtualise cells outside the view).
    nb_settings = root / "lab-settings" / "@jupyterlab" / "notebook-extension"
    nb_settings.mkdir(parents=True)
    (nb_settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    log = root / "lab.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True"],
        cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", 60, proc, log)
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "root": root, "log": log}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    port = free_port()
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = profile.parent / "chromium.log"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
         f"--user-data-dir={profile}", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", "about:blank"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/json/version", 30, proc, log)
        with sync_playwright() as p:
            b = p.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
            try:
                yield b
            finally:
                b.close()
    finally:
        stop(proc)


STATE_JS = """() => { const p = document.querySelector('.rk-player'), v = p && p.querySelector('video');
    return p ? {currentTime: v.currentTime, readyState: v.readyState, paused: v.paused, src: (v.currentSrc || '').slice(0, 40),
                mediaTime: p.dataset.mediaTime, boxes: p.dataset.boxes, rvfc: p.dataset.rvfc,
                caption: p.querySelector('.rk-caption').textContent, note: p.querySelector('.rk-note').textContent} : null; }"""


def wait_js(page, condition: str, what: str, timeout: int = 10_000) -> None:
    """Wait for a JS condition; on timeout say what the player's state was, with a screenshot."""
    try:
        page.wait_for_function(condition, timeout=timeout)
    except Exception:
        page.screenshot(path=str(SHOTS / "failed.png"))
        raise AssertionError(f"{what}: not reached in {timeout / 1000:g} s; player state {page.evaluate(STATE_JS)}")


def test_quickstart_in_jupyterlab(lab, browser):
    t_start = time.monotonic()
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("failed*.png"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    console_errors = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{lab['url']}/lab/tree/notebooks/quickstart.ipynb?token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # The file browser is open beside the notebook, as a new user has it.
    if not page.locator(".jp-FileBrowser").first.is_visible():
        page.keyboard.press("Control+Shift+F")
    # JupyterLab may ask which kernel to start: the notebook's own (python3).
    select = page.locator(".jp-Dialog button", has_text="Select")
    try:
        select.wait_for(state="visible", timeout=8_000)
        select.click()
    except Exception:
        pass
    page.wait_for_function("() => document.body.innerText.includes('Python 3 (ipykernel) | Idle')", timeout=60_000)
    # Run → Run All Cells, through the menu a user clicks.
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator("li[data-command='runmenu:run-all']").click()
    # The last cell prints SUMMARY once every assertion of the notebook passed.
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-OutputArea-output')].some(e => e.textContent.includes('SUMMARY'))",
            timeout=150_000)
    except Exception:
        page.screenshot(path=str(SHOTS / "failed_run_all.png"), full_page=True)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        raise AssertionError(f"the notebook did not finish; stderr outputs: {errors[-3:]}\n"
                             f"server log: {lab['log'].read_text()[-2000:]}")
    assert not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                            has_text="Traceback").count()
    body = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in body and "model not found" not in body

    # -- the player --------------------------------------------------------------------
    player = page.locator(".rk-player").first
    player.scroll_into_view_if_needed()
    page.wait_for_function("() => { const v = document.querySelector('.rk-player video');"
                           " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=30_000)
    video_size = page.evaluate("() => { const v = document.querySelector('.rk-player video');"
                               " return [v.videoWidth, v.videoHeight, v.duration]; }")
    assert video_size[:2] == [640, 360] and 9.0 < video_size[2] < 10.5, video_size  # container duration
    lanes = player.locator(".rk-lanes-canvas")
    assert int(lanes.get_attribute("data-lanes")) >= 3
    assert player.locator(".rk-thumb").count() >= 3  # the face gallery
    page.screenshot(path=str(SHOTS / "player.png"), full_page=False)
    player.screenshot(path=str(SHOTS / "player_widget.png"))

    # Click a lane on one of its bars: the player seeks there and draws that face. The
    # notebook left the player at the main face's first result, which may be the very one the
    # click lands on (where the faces' tracks start depends on the CPU's float rounding), so
    # the player goes to the end first (End), as far from the first lane's first bar as it gets.
    player.focus()
    page.keyboard.press("End")
    wait_js(page, "() => { const v = document.querySelector('.rk-player video'); return v.currentTime > v.duration - 1; }",
            "End seeks to the end of the video")
    before = page.evaluate("() => document.querySelector('.rk-player video').currentTime")
    x, y = page.evaluate("""() => {
        const c = document.querySelector('.rk-lanes-canvas'), ctx = c.getContext('2d');
        const dpr = window.devicePixelRatio || 1, y = 18 + 8;
        const row = ctx.getImageData(0, y * dpr, c.width, 1).data;
        for (let px = Math.ceil(120 * dpr); px < c.width; px++) {
          const [r, g, b, a] = row.slice(4 * px, 4 * px + 4);
          if (a > 200 && !(r > 200 && g < 30 && b < 30)) {
            const box = c.getBoundingClientRect();
            return [box.left + px / dpr + 2, box.top + y];
          }
        }
        return [null, null]; }""")
    assert x is not None, "no bar drawn in the first lane"
    page.mouse.click(x, y)
    wait_js(page, f"() => Math.abs(document.querySelector('.rk-player video').currentTime - {before}) > 0.5",
            f"a click on the first lane at ({x:.0f}, {y:.0f}) seeks the video")
    wait_js(page, "() => +document.querySelector('.rk-player').dataset.boxes >= 1", "the lane's box is drawn")
    after = page.evaluate("() => document.querySelector('.rk-player video').currentTime")
    assert after != before
    # Frame-accurate: the presented frame is the analysed one (its media time, less the
    # video stream's start, is the result's Timestamp).
    wait_js(page, "() => document.querySelector('.rk-player .rk-caption').textContent.startsWith('analysed frame')",
            "the seek lands on the analysed frame itself")

    # Hover a lane: a tooltip with the lane's name, confidence and time.
    page.mouse.move(x + 1, y)
    tip = player.locator(".rk-tip")
    tip.wait_for(state="visible", timeout=5_000)
    text = tip.inner_text()
    assert text.startswith("face ") and "confidence" in text and text.endswith(" s"), text
    page.screenshot(path=str(SHOTS / "lane_hover.png"))

    # The keyboard: → steps one frame (1/29.97 s) while paused.
    t0 = float(player.get_attribute("data-media-time"))
    player.focus()
    page.keyboard.press("ArrowRight")
    wait_js(page, f"() => Math.abs(+document.querySelector('.rk-player').dataset.mediaTime - {t0}) > 0.02",
            "→ steps one frame")
    t1 = float(player.get_attribute("data-media-time"))
    assert 0.02 < t1 - t0 < 0.07, (t0, t1)

    # -- the timeline (ipywidgets) rendered too -----------------------------------------------
    timeline_imgs = page.locator(".jp-OutputArea-output .widget-image")
    assert timeline_imgs.count() >= 2
    timeline_imgs.first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "timeline.png"))

    # -- layout: nothing wider than the notebook at 1024 px with the file browser open ----------
    overflow = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output')]
        .filter(o => o.querySelector('.rk-player, .widget-vbox'))
        .map(o => o.scrollWidth - o.clientWidth)""")
    assert overflow and max(overflow) <= 2, overflow
    height = page.evaluate("() => document.querySelector('.rk-player').getBoundingClientRect().height")
    assert height < 768, height  # fits a 13-inch laptop's window

    # -- the saved notebook carries the static pictures -------------------------------------------
    page.keyboard.press("Control+s")
    saved = lab["root"] / "notebooks" / "quickstart.ipynb"
    def ours(nb):  # the player's and the timeline's outputs (tqdm's own bar widget is not ours)
        return [o for c in nb["cells"] if c["cell_type"] == "code"
                and ("job.player()" in "".join(c["source"]) or "job.timeline()" in "".join(c["source"]))
                for o in c.get("outputs", []) if WIDGET in o.get("data", {})]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        widget_outputs = ours(json.loads(saved.read_text()))
        if len(widget_outputs) >= 2 and all("image/png" in o["data"] for o in widget_outputs):
            break
        time.sleep(0.5)
    assert len(widget_outputs) == 2 and all("image/png" in o["data"] for o in widget_outputs)
    for o, name in zip(widget_outputs, ("player", "timeline")):
        (SHOTS / f"saved_{name}_fallback.png").write_bytes(base64.b64decode(o["data"]["image/png"]))
    assert not [e for e in console_errors if "rk-" in e or "anywidget" in e.lower()], console_errors
    context.close()
    assert time.monotonic() - t_start < 240
