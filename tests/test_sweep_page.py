"""The Sweep page, through streamlit.testing's AppTest and once in headless Chromium, on a real
study trained here: a trial with a planted fault (all-zero init) pruned by the diagnosis and
healthy trials. The page lists the trials with the finding that pruned one, draws the objective
against the learning rate and parallel coordinates, opens a trial in the run pages, starts a
sweep (a real worker process), stops it, and reruns the best trial with more epochs as a Train job.
Screenshots of the browser test go to test-artifacts/screenshots/sweep-*.png."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

import runstore  # noqa: E402
import sweep  # noqa: E402
import jobs  # noqa: E402
from jobs import JobManager  # noqa: E402
from playground.config import Config  # noqa: E402
from sweep.study import budget_left, load, trial_rows  # noqa: E402
from sweep.worker import run_worker  # noqa: E402
from test_app_pages import texts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGE = "dashboard/pages/sweep.py"
BASE = Config(workload="digits", depth=2, width=32, optimizer="momentum", epochs=3, eval_every=10, probe_every=5,
              device="cpu")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The app's working directory, whose runs/ holds the study "demo": trial 0 with all-zero init
    (pruned), two healthy ones."""
    wd = tmp_path_factory.mktemp("sweep-app")
    runs = wd / "runs"
    url = sweep.default_url(runs)
    spec = sweep.SweepSpec(base=BASE, space=sweep.parse_space("lr=0.01:0.1\ninit=zeros,default"), n_trials=3)
    study = sweep.create_study(url, "demo", spec)
    study.enqueue_trial({"lr": 0.05, "init": "zeros"})
    study.enqueue_trial({"lr": 0.05, "init": "default"})
    study.enqueue_trial({"lr": 0.02, "init": "default"})
    assert run_worker(url, "demo", runs, log=lambda m: None) == 3
    return wd


@pytest.fixture
def app(monkeypatch, workdir):
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(workdir)
    monkeypatch.setattr(JobManager, "_probe_devices", lambda self: setattr(self, "_devices", ["cpu"]))
    monkeypatch.setattr(sys, "argv", ["app.py", "--no-samples", "--refresh", "0.5"])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at) -> str:
    """The page's text as the user reads it (Markdown escapes removed)."""
    return texts(at).replace("\\", "")


def _wait(pred, timeout=120.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_planted_fault_is_pruned_early_with_its_finding_stored_and_healthy_trials_are_not(workdir):
    runs = workdir / "runs"
    study, spec = load(sweep.default_url(runs), "demo")
    faulty, *healthy = study.trials
    assert faulty.state == optuna.trial.TrialState.PRUNED
    reason = faulty.user_attrs["pruned"]
    assert reason["by"] == "diagnosis" and reason["severity"] == "critical" and reason["message"]
    assert reason["trigger"] in ("dead_relu", "no_gradient")  # all-zero init: dead units, zero gradients
    meta = runstore.read_meta(faulty.user_attrs["run_dir"])
    assert Path(faulty.user_attrs["run_dir"]) == runs / "demo" / "trial-0000"
    assert meta["status"] == "stopped" and meta["error"].startswith("pruned by the diagnosis at step")
    assert meta["sweep"]["study"] == "demo" and meta["sweep"]["trial"] == 0
    assert meta["sweep"]["pruned"]["rule"] == reason["rule"]
    assert meta["last_step"] <= BASE.total_steps() / 2  # it stopped early
    for t in healthy:  # the same study, a random init: they learn and are never pruned
        assert t.state == optuna.trial.TrialState.COMPLETE and "pruned" not in t.user_attrs
        assert t.value > 0.5 and runstore.read_meta(t.user_attrs["run_dir"])["status"] == "finished"


def test_replaying_a_recording_prunes_where_the_live_pruner_did(workdir):
    """benchmarks/sweep.py trains each config once and replays every pruner setting over the
    recordings (sweep.replay.ReplayPruner in an ordinary Optuna study): fed the reports of the
    trial pruned live, it prunes at the same step, for the same rule."""
    from runstore import tags
    from sweep.records import RUN_DIR, TOTAL_STEPS
    from sweep.replay import Recording, ReplayPruner

    live = load(sweep.default_url(workdir / "runs"), "demo")[0].trials[0]
    run_dir = live.user_attrs[RUN_DIR]
    run = runstore.load_run(run_dir)
    wall = run.series(tags.WALL_TIME)
    pruner = ReplayPruner(recordings={run_dir: Recording(run)},
                          clock=lambda d, step: float(wall[wall.index <= step].iloc[-1] - wall.iloc[0]))
    replay = optuna.create_study(direction="maximize", pruner=pruner)
    trial = replay.ask()
    trial.set_user_attr(RUN_DIR, run_dir)
    trial.set_user_attr(TOTAL_STEPS, live.user_attrs[TOTAL_STEPS])
    for step, value in sorted(live.intermediate_values.items()):
        trial.report(value, step)
        if trial.should_prune():
            break
    else:
        raise AssertionError("the replay did not prune")
    reason = replay.trials[0].user_attrs["pruned"]
    assert step == live.user_attrs["pruned"]["step"] and reason["trigger"] == live.user_attrs["pruned"]["trigger"]


def test_the_page_lists_trials_with_the_finding_that_pruned_one_and_opens_it(app, workdir):
    at = app
    table = at.get("dataframe")[0].value.set_index("#")
    assert list(table["state"]) == ["pruned", "complete", "complete"]
    assert table.loc[0, "why"].startswith("pruned by the diagnosis at step")
    # a pruned trial shows the last value it reported, at the step it was pruned, not an empty cell
    pruned = trial_rows(load(sweep.default_url(workdir / "runs"), "demo")[0])[0]
    assert table.loc[0, "val_accuracy"] == pytest.approx(pruned.last_value)
    assert table.loc[0, "step"] == f"{pruned.last_step:,}/{BASE.total_steps():,}"
    assert table.loc[1, "val_accuracy"] > 0.5 and table.loc[0, "init"] == "zeros"
    charts = {c.proto.id.split("-", 2)[2]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    scatter, parcoords = charts["sweep-scatter"], charts["sweep-parcoords"]
    assert {t["name"] for t in scatter["data"]} == {"complete", "pruned"}
    assert scatter["layout"]["xaxis"]["type"] == "log"
    assert len(parcoords["data"][0]["dimensions"]) == 3  # lr, init, the objective
    text = _texts(at)
    assert "Pruned at step" in text and ("dead_relu" in text or "no_gradient" in text)
    assert "Best val_accuracy" in text
    # open the pruned trial's run in the run pages
    at.button(key="sweep-open").click().run()
    assert at.session_state["current_run"] == str(workdir / "runs" / "demo" / "trial-0000")


def test_rerun_best_with_more_epochs_starts_a_linked_train_job(app, workdir):
    at = app
    at.number_input(key="sweep_rerun_epochs").set_value(9)
    at.button(key="sweep-rerun").click().run()
    mgr = JobManager(workdir / "runs", devices=["cpu"], grace_s=2)
    try:
        [job] = mgr.jobs()
        study, spec = load(sweep.default_url(workdir / "runs"), "demo")
        best = max((r for r in trial_rows(study) if r.value is not None), key=lambda r: r.value)
        assert job.parent == best.run_dir and job.config["epochs"] == 9
        assert job.config["lr"] == pytest.approx(best.params["lr"]) and job.config["init"] == best.params["init"]
    finally:
        for j in mgr.live_jobs():
            mgr.stop(j.run_dir)
            jobs.wait_for(mgr, j.run_dir, lambda i: not i.live, timeout=30)


def test_start_and_stop_a_sweep_from_the_page(app, workdir):
    at = app
    at.text_input(key="sweep_name").set_value("from-page")
    at.selectbox(key="sweep_workload").set_value("spirals").run()
    at.number_input(key="sweep_epochs").set_value(3000)
    at.text_area(key="sweep_space_spirals_mlp").set_value("lr=1e-3:1e-2")
    at.number_input(key="sweep_trials").set_value(2)
    at.selectbox(key="sweep_pruner").set_value("both")
    at.run()
    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    url = sweep.default_url(workdir / "runs")
    study, spec = load(url, "from-page")
    assert spec.base.workload == "spirals" and spec.pruner == "both" and spec.n_trials == 2
    assert at.selectbox(key="sweep_watch").value == "from-page"
    _wait(lambda: any(r.last_step for r in trial_rows(study)), what="the worker to train its first trial")
    at.run()
    at.button(key="sweep-stop").click().run()
    _wait(lambda: not any(w.alive for w in sweep.workers(study)), what="the worker to stop")
    [row] = trial_rows(study)
    assert row.state == "stopped" and row.error.startswith("stopped on request")
    assert runstore.read_meta(row.run_dir)["status"] == "stopped"
    assert budget_left(study, spec) == 2  # a stopped trial does not use up the budget
    at.run()
    text = _texts(at)
    assert "sweep stopped]" in text and "badge[1 stopped]" in text and "badge[0 of 2 trials]" in text


def test_training_jobs_and_sweep_workers_share_one_limit_on_both_pages(app, workdir):
    """Two training jobs and a sweep worker run with a limit of 3: the Sweep page offers no worker
    and says why, the Train page counts the worker and says no slot is free. The page watches a
    study without workers meanwhile (the newest), while the worker runs for another."""
    import shutil
    import socket

    from sweep.study import WORKER_PREFIX
    from test_jobs import _sleeper, fake_job

    at, runs = app, workdir / "runs"
    url = sweep.default_url(runs)
    study, spec = load(url, "demo")
    sweep.create_study(url, "idle", spec)
    at.switch_page("dashboard/pages/train.py").run()
    limit = at.number_input(key="train_limit").value
    at.number_input(key="train_limit").set_value(3).run()
    procs = [fake_job(runs, "job-a"), fake_job(runs, "job-b")]
    worker = _sleeper()
    procs.append(worker)
    key = f"{WORKER_PREFIX}{socket.gethostname()}:{worker.pid}"
    study.set_user_attr(key, {"host": socket.gethostname(), "pid": worker.pid, "started": time.time(),
                              "runs_dir": str(runs), "ended": None, "trials": 0})
    try:
        time.sleep(2.1)  # the app re-reads the sweep workers at most every 2 s
        at.switch_page(PAGE).run()
        assert at.button(key="sweep_start").proto.disabled and at.number_input(key="sweep_workers").max == 1
        assert at.selectbox(key="sweep_watch").value == "idle"
        assert "0 of 3 slots free: 2 training jobs and 1 sweep worker running, limit 3" in _texts(at)
        at.switch_page("dashboard/pages/train.py").run()
        text = _texts(at)
        assert "2 + 1 sweep worker of 3 running" in text
        assert "No slot free: 2 training jobs and 1 sweep worker running, limit 3" in text
    finally:
        study.set_user_attr(key, {**study.user_attrs[key], "ended": time.time()})
        optuna.delete_study(study_name="idle", storage=sweep.open_storage(url))
        for p in procs:
            p.kill()
            p.wait()
        for d in runs.iterdir():
            if d.name.startswith("job-"):
                shutil.rmtree(d)
        at.number_input(key="train_limit").set_value(limit).run()


# -- in a browser --------------------------------------------------------------------------------------
@pytest.mark.browser
def test_the_sweep_page_in_chromium(workdir):
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, Server

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found")
    from playwright.sync_api import sync_playwright

    server = Server(app_args=["--no-samples", "--refresh", "1"], cwd=workdir, log=workdir / "streamlit.log")
    try:
        url = server.url
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/sweep?study=demo")  # the study of the link, not the newest one
            page.get_by_role("button", name="Start sweep").wait_for(timeout=60_000)
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2",
                                   timeout=60_000)
            page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
            page.wait_for_timeout(1500)
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "sweep-page.png"), full_page=True)
            assert page.get_by_text("pruned by the diagnosis at step").count() > 0 or \
                page.locator('[data-testid="stDataFrame"]').count() == 1
            assert page.get_by_text("Pruned at step").count() == 1
            assert page.locator(".js-plotly-plot .parcoords").count() == 1
            page.get_by_role("button", name="Open in Overview").click()
            page.get_by_role("heading", name="Overview · demo #0").wait_for(timeout=60_000)
            page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(SHOTS / "sweep-trial-overview.png"), full_page=True)
            assert page.get_by_text("Dead ReLU units").count() > 0  # the run's own advice names the fault
            browser.close()
        assert not errors, errors
    finally:
        server.stop()
