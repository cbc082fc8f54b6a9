"""The app in a real browser: `streamlit run app.py` headless, every page opened in Debian's
Chromium through Playwright, Plotly charts checked to be drawn, screenshots saved under
test-artifacts/screenshots/ (light theme, and the Overview again in the dark theme)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboard.synthetic import SyntheticSpec, write_synthetic_run

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "test-artifacts" / "screenshots"
# page url path -> charts it must draw for the dead-ReLU run
PAGES = {"": 0, "overview": 3, "activations": 3, "gradients": 4, "updates": 1, "predictions": 5, "compare": 2}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found: install Debian's chromium "
                                                           "package to run the browser tests"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`streamlit run app.py` in a subprocess on a free port; stopped (and only it) on exit.
    `extra` are Streamlit options, `app_args` the app's own (after `--`); `cwd` is where the app's
    user runs folder (runs/) is."""

    def __init__(self, runs_dir: Path | None = None, *, extra=(), app_args=(), cwd: Path = ROOT, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")
        args = (["--runs-dir", str(runs_dir)] if runs_dir is not None else []) + list(app_args)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.port", str(self.port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType",
             "none", *extra, "--", *args],
            cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit did not answer within 60 s; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("browser-runs")
    # "a_" sorts first, so the app opens on the faulty run and its advice cards
    write_synthetic_run(d / "a_dead_relu", SyntheticSpec(steps=2000, layers=5, fault="dead_relu", name="dead-relu",
                                                          lr=0.5, seed=1))
    write_synthetic_run(d / "b_healthy", SyntheticSpec(steps=2000, layers=5, name="healthy", seed=0))
    (d / "c_broken").mkdir()
    (d / "c_broken" / "run.json").write_text("{broken")
    return d


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(runs_dir, tmp_path_factory):
    s = Server(runs_dir, log=tmp_path_factory.mktemp("logs") / "streamlit.log")
    yield s
    s.stop()


def settle(page, charts: int, timeout_ms: int = 60_000) -> None:
    """Wait until the script has finished and `charts` Plotly charts have drawn their SVG."""
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=timeout_ms)
    if charts:
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {charts * 3}",
                               timeout=timeout_ms)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_timeout(800)  # let Plotly finish its transitions before the screenshot


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_every_page_renders_its_charts(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 2200})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for path, n in PAGES.items():
        page.goto(f"{server.url}/{path}")
        if path == "":
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
        settle(page, n)
        assert page.locator('[data-testid="stException"]').count() == 0, f"/{path} raised"
        plots = page.locator(".js-plotly-plot")
        assert plots.count() >= n, f"/{path}: {plots.count()} charts, expected {n}"
        for i in range(plots.count()):
            assert plots.nth(i).locator(".main-svg").count() >= 1
            assert plots.nth(i).bounding_box()["height"] > 100
        shot(page, path or "runs")
    assert not errors, errors
    page.close()


def test_runs_page_lists_runs_and_shows_the_broken_one_as_an_error_card(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1200})
    page.goto(server.url)
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
    settle(page, 0)
    assert page.get_by_text("could not be read").count() >= 1
    assert page.get_by_role("heading", name="Runs").count() == 1
    page.close()


def test_advice_card_jumps_to_the_chart_and_the_sidebar_switches_runs(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1600})
    page.goto(f"{server.url}/overview")
    settle(page, 3)
    assert page.get_by_text("Dead ReLU").count() >= 1
    page.get_by_role("button", name="Show on Activations").first.click()
    page.wait_for_url(re.compile(r"/activations(\?|$)"), timeout=30_000)  # the run stays in the query
    settle(page, 3)
    assert page.get_by_text("Showing the evidence for").count() == 1
    shot(page, "activations-from-advice")
    # pick the healthy run in the sidebar: its overview has no advice cards
    page.goto(f"{server.url}/overview")
    settle(page, 3)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="healthy").first.click()
    page.get_by_role("heading", name="Overview · healthy").wait_for(timeout=30_000)
    settle(page, 3)
    # the previous run's charts can satisfy settle() while the new run's advice is still computed
    page.get_by_text("No problems found").wait_for(timeout=60_000)
    assert page.get_by_text("No problems found").count() == 1
    assert page.get_by_role("button", name="Show on Activations").count() == 0
    shot(page, "overview-healthy")
    page.close()


def test_dark_theme(runs_dir, browser, tmp_path):
    s = Server(runs_dir, extra=["--theme.base", "dark"], log=tmp_path / "streamlit-dark.log")
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1600})
        page.goto(f"{s.url}/overview")
        settle(page, 3)
        bg = page.evaluate("getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor")
        rgb = [int(x) for x in bg[bg.index("(") + 1:bg.index(")")].split(",")[:3]]
        assert sum(rgb) < 150, f"not a dark background: {bg}"
        assert page.locator(".js-plotly-plot").count() >= 3
        shot(page, "overview-dark")
        page.goto(f"{s.url}/gradients")
        settle(page, 4)
        shot(page, "gradients-dark")
        page.close()
    finally:
        s.stop()


def test_a_link_and_a_reload_open_the_same_run_and_layers(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1600})
    page.goto(f"{server.url}/activations?run=b_healthy&act_layers=net.1")
    for _ in range(2):  # the link, then a reload of the page it became
        page.get_by_role("heading", name="Activations · healthy").wait_for(timeout=60_000)
        settle(page, 3)
        picked = page.locator('[data-testid="stMultiSelect"]').first.inner_text()
        assert "net.1 (ReLU)" in picked and "net.3" not in picked, picked
        assert "run=b_healthy" in page.url and "act_layers=net.1" in page.url
        page.reload()
    # picking another run in the sidebar puts it in the URL
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="dead-relu").first.click()
    page.get_by_role("heading", name="Activations · dead-relu").wait_for(timeout=30_000)
    page.wait_for_url("**run=a_dead_relu**", timeout=30_000)
    page.close()
