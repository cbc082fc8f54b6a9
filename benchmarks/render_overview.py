"""How long opening the Overview of a big run takes: 100,000 steps, 30 layers, probes' defaults.

    python benchmarks/render_overview.py            # synthesize (once, cached) and measure
    python benchmarks/render_overview.py --browser  # also time a real Chromium page load

The run is written with runstore.RunWriter exactly as the probes lay it out (layer statistics and
40-bin histograms every 25 steps, a flush every 200 steps), so loading it costs what loading a real
run of that size costs. Reported, each the median of --repeat tries:

  load       runstore.load_run (cold: new Run object, file in the OS cache)
  advise     diagnostics.advise on the loaded run
  figures    building the Overview's three Plotly figures (downsampling included)
  page cold  AppTest run of the Overview in a fresh app: load + advise + figures + serialization
  page warm  the same page again in that app (the run is cached; what every later visit costs)
  browser    (--browser) in Chromium: picking the big run in the sidebar of a running app until
             its Overview charts are drawn (not cached yet), and a reload of that page (cached);
             then all of it again with --no-webgl (suffix _svg): this machine's Chromium has no
             GPU and pays seconds to start WebGL in software, which is why the charts only switch
             to WebGL when they hold more than 20,000 points (the Overview's stay SVG)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.synthetic import SyntheticSpec, write_synthetic_run  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
TARGET_S = 3.0


def ensure_run(folder: Path, spec: SyntheticSpec, fresh: bool) -> tuple[Path, float | None]:
    """The synthetic run under folder/<name>, written unless a finished one with this spec exists."""
    run_dir = folder / spec.name
    stamp = folder / f"{spec.name}.spec.json"
    want = json.dumps({"steps": spec.steps, "layers": spec.layers, "every": spec.every, "bins": spec.bins,
                       "flush_steps": spec.flush_steps})
    if not fresh and run_dir.is_dir() and stamp.exists() and stamp.read_text() == want:
        return run_dir, None
    shutil.rmtree(run_dir, ignore_errors=True)
    t = time.perf_counter()
    write_synthetic_run(run_dir, spec)
    took = time.perf_counter() - t
    stamp.write_text(want)
    return run_dir, took


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def time_parts(run_dir: Path, repeat: int) -> dict:
    """load / advise / figures, each the median of `repeat` tries."""
    import runstore
    from dashboard.figures.base import Curve, lines_figure
    from dashboard.views.overview import _split_curves

    loads, advises, figs = [], [], []
    run = None
    for _ in range(repeat):
        t = time.perf_counter()
        run = runstore.load_run(run_dir)
        loads.append(time.perf_counter() - t)
        try:
            import diagnostics

            t = time.perf_counter()
            diagnostics.advise(run)
            advises.append(time.perf_counter() - t)
        except ImportError:
            pass
        t = time.perf_counter()
        lines_figure(_split_curves(run, "loss", "#4e79a7"), log_y=True, smoothing=0.6, mark_nonfinite=True).to_json()
        lines_figure(_split_curves(run, "accuracy", "#4e79a7"), smoothing=0.6).to_json()
        lines_figure([Curve("group 0", run.series("lr/group0"))]).to_json()
        figs.append(time.perf_counter() - t)
    return {"load_s": _median(loads), "advise_s": _median(advises), "figures_s": _median(figs),
            "scalar_tags": len(run.scalar_tags()), "hist_tags": len(run.hist_tags()),
            "loss_points": len(run.series("train/loss"))}


def time_apptest(folder: Path, run_dir: Path, repeat: int) -> dict:
    """Cold and warm AppTest runs of the run's Overview page (cold = caches cleared first)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    colds, warms = [], []
    argv = sys.argv
    sys.argv = ["app.py", "--runs-dir", str(folder), "--no-samples"]
    try:
        for _ in range(repeat):
            st.cache_resource.clear()
            st.cache_data.clear()
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
            # start directly on the Overview, as a bookmark to /overview would
            at.switch_page("dashboard/pages/overview.py")
            at.session_state["current_run"] = os.path.abspath(run_dir)
            t = time.perf_counter()
            at.run()
            colds.append(time.perf_counter() - t)
            if at.exception:
                raise RuntimeError(f"the Overview page failed: {at.exception[0].value}")
            charts = len(at.get("plotly_chart"))
            t = time.perf_counter()
            at.run()
            warms.append(time.perf_counter() - t)
    finally:
        sys.argv = argv
    return {"page_cold_s": _median(colds), "page_warm_s": _median(warms), "charts": charts}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_overview(page, name: str, timeout_ms: int = 120_000) -> None:
    page.get_by_role("heading", name=f"Overview · {name}").wait_for(timeout=timeout_ms)
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3", timeout=timeout_ms)


def time_browser(folder: Path, big: str, small: str, *, webgl: bool = True) -> dict:
    """Chromium on a freshly started server:
    first small: the app's first page (/overview of a small run): Python imports and front-end boot
    switch:      the user picks the big run in the sidebar: loading it + drawing (+ advice), i.e.
                 what opening the Overview of a big run costs in a running app
    warm:        page reload, now cached: the URL (?run=<id>) reopens the big run's Overview"""
    from playwright.sync_api import sync_playwright

    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="streamlit-bench-", suffix=".log", delete=False)
    out = {}

    def start():
        return subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
                                 "true", "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", "--",
                                 "--runs-dir", str(folder), "--no-samples"] + ([] if webgl else ["--no-webgl"]),
                                cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)

    def wait_port():
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.2)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1400})
        # cold: the big run is the only run, straight to /overview on a fresh server
        proc = start()
        try:
            wait_port()
            page.goto(f"http://127.0.0.1:{port}/overview?bench=cold")
            t = time.perf_counter()
            _wait_overview(page, small)
            out["browser_first_small_s"] = round(time.perf_counter() - t, 3)
            # switch: pick the big run in the sidebar
            t = time.perf_counter()
            page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
            page.get_by_role("option", name=big).click()
            _wait_overview(page, big)
            out["browser_switch_s"] = round(time.perf_counter() - t, 3)
            # warm: reload with the run cached; the new session reads the run from the URL
            t = time.perf_counter()
            page.reload()
            _wait_overview(page, big)
            out["browser_warm_reload_s"] = round(time.perf_counter() - t, 3)
        finally:
            proc.terminate()
            proc.wait(10)
        browser.close()
    suffix = "" if webgl else "_svg"
    return {k + suffix: v for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "traindiag-bench")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fresh", action="store_true", help="rewrite the synthetic run")
    ap.add_argument("--browser", action="store_true", help="also time Chromium (needs /usr/bin/chromium)")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    a = ap.parse_args(argv)

    spec = SyntheticSpec(steps=a.steps, layers=a.layers, name=f"bench-{a.steps // 1000}k-{a.layers}l")
    a.folder.mkdir(parents=True, exist_ok=True)
    run_dir, wrote = ensure_run(a.folder, spec, a.fresh)
    # a small run that sorts first: the app opens on it, and the browser timing then switches
    small = SyntheticSpec(steps=500, layers=3, name="a-small-run")
    ensure_run(a.folder, small, a.fresh)
    size_mb = sum(f.stat().st_size for f in run_dir.iterdir()) / 1e6
    res = {"steps": a.steps, "layers": a.layers, "run_mb": round(size_mb, 1), "cpu_count": os.cpu_count()}
    if wrote is not None:
        res["synthesize_s"] = round(wrote, 2)
    res.update(time_parts(run_dir, a.repeat))
    res.update(time_apptest(a.folder, run_dir, a.repeat))
    if a.browser:
        if not Path(CHROMIUM).exists():
            print(f"skipping the browser timing: {CHROMIUM} not found")
        else:
            res.update(time_browser(a.folder, spec.name, small.name))
            # the same without WebGL: headless Chromium has no GPU and starts WebGL in software
            # (SwiftShader), which a browser with GPU acceleration does not pay
            res.update(time_browser(a.folder, spec.name, small.name, webgl=False))
    for k, v in res.items():
        print(f"{k:>30}: {round(v, 3) if isinstance(v, float) else v}")
    for label, key in (("server side (AppTest)", "page_cold_s"), ("Chromium, WebGL", "browser_switch_s"),
                       ("Chromium, SVG", "browser_switch_s_svg")):
        if key in res:
            verdict = "within" if res[key] < TARGET_S else "OVER"
            print(f"{'opening the overview':>30}: {res[key]:.2f} s {label} ({verdict} the {TARGET_S:g} s target)")
    print(f"{'cached (server side)':>30}: {res['page_warm_s']:.2f} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
