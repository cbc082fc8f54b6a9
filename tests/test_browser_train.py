"""The Train page in a real browser: `streamlit run app.py` headless, Debian's Chromium through
Playwright. Start a CPU training from the form, watch the step counter and the loss chart advance
live, stop it, and see the status change. Screenshots go to test-artifacts/screenshots/train-*.png."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, SHOTS, Server
from tests.test_browser import browser  # noqa: F401  (the shared Chromium fixture)

EPOCHS = 3000  # digits: 23 steps per epoch, far more than the test waits for; it is stopped

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not found: install Debian's chromium "
                                                           "package to run the browser tests"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The app's working directory; its user runs folder (where jobs go) is <workdir>/runs."""
    return tmp_path_factory.mktemp("train-browser")


@pytest.fixture(scope="module")
def server(workdir):
    s = Server(app_args=["--no-samples", "--refresh", "1"], cwd=workdir, log=workdir / "streamlit.log")
    try:
        yield s.url
    finally:
        s.stop()
        _stop_jobs(workdir / "runs")


def _stop_jobs(runs: Path) -> None:
    """Never leave a training process behind, whatever the test did."""
    from jobs import JobManager, wait_for

    if runs.exists():
        mgr = JobManager(runs, devices=["cpu"], grace_s=2)
        for j in mgr.live_jobs():
            mgr.stop(j.run_dir)
            wait_for(mgr, j.run_dir, lambda i: not i.live, timeout=20)


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _step(page) -> int:
    metric = page.locator('[data-testid="stMetric"]', has_text="Step of").first
    return int(metric.locator('[data-testid="stMetricValue"]').inner_text().replace(",", "").strip())


def _loss_chart_last_step(page) -> float:
    """The largest step drawn by the loss chart's traces, read from Plotly's own data."""
    return page.evaluate("""() => {
        let best = -1;
        for (const gd of document.querySelectorAll('.js-plotly-plot')) {
            const title = String((gd.layout && gd.layout.title && gd.layout.title.text) || '');
            if (!title.includes('Loss')) continue;
            for (const tr of gd._fullData || []) {  // _fullData: x decoded into typed arrays
                if (!tr.x || !tr.name || !tr.name.includes('loss')) continue;
                for (const v of Array.from(tr.x)) if (v > best) best = v;
            }
        }
        return best;
    }""")


def _wait_until(page, fn, *, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        page.wait_for_timeout(500)
    _shot(page, "train-timeout")
    raise AssertionError(f"timed out waiting for {what}")


def test_start_watch_live_and_stop_a_cpu_training(server, browser, workdir):
    page = browser.new_page(viewport={"width": 1440, "height": 1500})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/train")
    page.get_by_role("button", name="Start training").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Optimizer").click()
    epochs = page.get_by_role("spinbutton", name="epochs")
    epochs.fill(str(EPOCHS))
    epochs.press("Enter")
    name = page.get_by_role("textbox", name="Run name (optional)")
    name.fill("browser run")
    name.press("Enter")
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)
    expected_total = f"Step of {EPOCHS * 23:,}"
    _wait_until(page, lambda: page.get_by_text(f"{EPOCHS * 23:,} optimizer steps").count() > 0, timeout_s=30,
                what="the form to take the new epochs")
    page.get_by_role("button", name="Start training").click()

    # live: the step counter and the loss chart advance without touching the page
    page.get_by_text(expected_total).first.wait_for(timeout=60_000)
    first = _wait_until(page, lambda: _step(page) > 0 and _loss_chart_last_step(page) > 0 and _step(page),
                        timeout_s=90, what="the first recorded steps")
    chart_first = _loss_chart_last_step(page)
    _shot(page, "train-live-1")
    later = _wait_until(page, lambda: (_step(page) > first + 20 and _loss_chart_last_step(page) > chart_first)
                        and _step(page), timeout_s=60, what="the step counter and loss chart to advance")
    chart_later = _loss_chart_last_step(page)
    assert later > first and chart_later > chart_first
    # the progress bar says how long is left (its format depends on how fast the machine is)
    assert page.get_by_text(re.compile(r"\bETA\b")).count() > 0
    _shot(page, "train-live-2")

    # The job's Stop button, in the page body: Streamlit's own header shows a "Stop" (script run)
    # button too while a live refresh is running.
    job_stop = page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop")
    job_stop.click()
    page.get_by_text("Everything recorded so far is kept").wait_for(timeout=60_000)
    page.wait_for_timeout(1500)
    _shot(page, "train-stopped")
    assert job_stop.count() == 0
    [run_dir] = [p for p in (workdir / "runs").iterdir() if p.is_dir()]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "stopped" and meta["name"] == "browser run"
    assert meta["hparams"]["epochs"] == EPOCHS

    # the stopped run opens in the run pages, with its status and a way to rerun it
    page.get_by_role("button", name="Open in Overview").click()
    page.get_by_role("heading", name=re.compile("Overview · browser run")).wait_for(timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)
    page.wait_for_timeout(1500)
    assert page.get_by_role("button", name="Rerun with changes").count() == 1
    _shot(page, "train-stopped-overview")
    assert not errors, errors
