"""The Train page through streamlit.testing's AppTest: every config field has a widget, a short run
started from the form trains exactly the hyperparameters set, invalid values start nothing, Stop
ends a live run, any run can be rerun with changes, and "Apply" reruns with exactly the advised
change. The training itself is real: `python -m playground train` processes on tiny configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import jobs
import runstore
from jobs import JobManager
from playground.config import FIELDS, Config
from runstore import tags as T

ROOT = Path(__file__).resolve().parent.parent
TRAIN = "dashboard/pages/train.py"


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """The app's working directory: its user runs folder is <tmp>/runs (where jobs are created)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path / "runs"


@pytest.fixture
def devices(monkeypatch):
    """Devices the job manager finds, instead of probing this machine (a test sets them)."""
    found = {"list": ["cpu"]}
    monkeypatch.setattr(JobManager, "_probe_devices", lambda self: setattr(self, "_devices", list(found["list"])))
    return found


@pytest.fixture
def app(monkeypatch, user_dir, devices):
    def make(*folders) -> AppTest:
        argv = ["app.py", "--no-samples", "--refresh", "0.5"]
        for f in folders:
            argv += ["--runs-dir", str(f)]
        monkeypatch.setattr(sys, "argv", argv)
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
        at.switch_page(TRAIN).run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    yield make
    _stop_all(user_dir)


def _stop_all(runs: Path) -> None:
    if runs.exists():
        mgr = JobManager(runs, devices=["cpu"], grace_s=2)
        for j in mgr.live_jobs():
            mgr.stop(j.run_dir)
        for j in mgr.jobs():
            jobs.wait_for(mgr, j.run_dir, lambda i: not i.live, timeout=20)


def _jobs(runs: Path) -> list:
    return JobManager(runs, devices=["cpu"]).jobs() if runs.exists() else []


def _wait(runs: Path, pred, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _jobs(runs)
        if found and pred(found[0]):
            return found[0]
        time.sleep(0.3)
    raise AssertionError(f"no job reached the expected state: {[(j.name, j.state, j.step) for j in _jobs(runs)]}")


def _set_tiny(at: AppTest, **extra) -> None:
    at.selectbox(key="tf_workload").set_value("spirals").run()
    at.number_input(key="tf_epochs").set_value(extra.pop("epochs", 1))
    at.number_input(key="tf_batch_size").set_value(100)
    at.number_input(key="tf_eval_every").set_value(5)
    at.number_input(key="tf_probe_every").set_value(5)
    at.run()


def _badges(at: AppTest) -> list[str]:
    """Texts of st.badge elements (drawn as :color-badge[...] markdown)."""
    out = []
    for m in at.markdown:
        if "-badge[" in m.value:
            out.append(m.value.split("[", 1)[1].rstrip("]").split(":")[-1].strip())
    return out


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_every_config_field_has_a_fitting_widget(app):
    at = app()
    kinds = {}
    for name in FIELDS:
        for kind in ("selectbox", "toggle", "number_input"):
            if any(w.key == f"tf_{name}" for w in getattr(at, kind)):
                kinds[name] = kind
    assert set(kinds) == set(FIELDS), set(FIELDS) - set(kinds)
    for name, spec in FIELDS.items():
        if spec.choices:
            assert kinds[name] == "selectbox", name
        elif spec.type is bool:
            assert kinds[name] == "toggle", name
    # learning rate and weight decay: a log-scale slider next to the typed entry
    assert {s.key for s in at.select_slider} >= {"tf_lr__log", "tf_weight_decay__log"}
    lr_stops = at.select_slider(key="tf_lr__log").options
    assert lr_stops[0] == "1e-06" and lr_stops[-1] == "10" and "0.001" in lr_stops
    assert at.select_slider(key="tf_weight_decay__log").options[0] == "0"  # 0 = off
    at.select_slider(key="tf_lr__log").set_value(0.05).run()
    assert at.number_input(key="tf_lr").value == pytest.approx(0.05)
    at.number_input(key="tf_lr").set_value(0.0007).run()
    assert at.select_slider(key="tf_lr__log").value == pytest.approx(0.0005)  # nearest stop on a log scale
    # models follow the workload
    at.selectbox(key="tf_workload").set_value("sequence").run()
    assert at.selectbox(key="tf_model").options == ["lstm", "gru"] and at.selectbox(key="tf_model").value == "lstm"


@pytest.mark.parametrize("present,offered", [(["cpu"], ["auto", "cpu"]), (["cuda", "cpu"], ["auto", "cuda", "cpu"])])
def test_gpu_devices_are_offered_only_when_present(app, devices, present, offered):
    devices["list"] = present
    at = app()
    for _ in range(50):  # the device probe runs in the background
        if at.selectbox(key="tf_device").options == offered:
            break
        time.sleep(0.1)
        at.run()
    assert at.selectbox(key="tf_device").options == offered


def test_a_short_run_started_from_the_form_trains_the_given_hyperparameters(app, user_dir):
    at = app()
    _set_tiny(at)
    at.number_input(key="tf_lr").set_value(0.02)
    at.selectbox(key="tf_optimizer").set_value("momentum")
    at.number_input(key="tf_dropout").set_value(0.1)
    at.toggle(key="tf_shuffle").set_value(False)
    at.number_input(key="tf_weight_decay").set_value(1e-4)
    at.text_input(key="train_name").set_value("form run ../x")
    at.run()
    assert not _errors(at)
    at.button(key="train_start").click().run()
    assert not _errors(at) and not at.exception
    assert any("Started" in s.value for s in at.success)
    job = _wait(user_dir, lambda j: not j.live)
    assert job.state == "finished", job.error
    assert job.run_dir.parent == user_dir.resolve() and job.run_dir.name.startswith("form-run-x-")
    expected = Config(workload="spirals", epochs=1, batch_size=100, eval_every=5, probe_every=5, lr=0.02,
                      optimizer="momentum", dropout=0.1, shuffle=False, weight_decay=1e-4).to_dict()
    assert runstore.load_run(job.run_dir).hparams == expected
    at.run()  # the monitor shows the finished job with its chart
    assert "Step of 15" in [m.label for m in at.metric] and "15" in [m.value for m in at.metric]
    assert any(c.proto.id.endswith("train-loss") for c in at.get("plotly_chart"))


@pytest.mark.parametrize("field,value,kind,message", [
    ("lr", -1.0, "number_input", "lr: -1.0 is out of range; expected a number in (0, 10]"),
    ("dropout", 1.0, "number_input", "dropout: 1.0 is out of range; expected a number in [0, 1)"),
    ("depth", 40, "number_input", "depth: 40 is out of range"),
])
def test_invalid_values_show_a_message_and_start_nothing(app, user_dir, field, value, kind, message):
    at = app()
    getattr(at, kind)(key=f"tf_{field}").set_value(value).run()
    assert any(message in e for e in _errors(at)), _errors(at)
    at.button(key="train_start").click().run()
    assert any(e.startswith("Not started.") and message in e for e in _errors(at)), _errors(at)
    assert not user_dir.exists() or not any(user_dir.iterdir())


def test_model_and_workload_mismatch_names_the_field(app, user_dir):
    at = app()
    at.selectbox(key="tf_workload").set_value("sequence").run()
    at.toggle(key="tf_batch_norm").set_value(True).run()
    at.button(key="train_start").click().run()
    assert any("batch_norm" in e and "lstm" in e for e in _errors(at)), _errors(at)
    assert not user_dir.exists() or not any(user_dir.iterdir())


def test_stop_ends_a_live_run_and_the_status_changes(app, user_dir):
    at = app()
    _set_tiny(at, epochs=3000)
    at.button(key="train_start").click().run()
    _wait(user_dir, lambda j: j.state == "running" and (j.step or 0) > 0)
    at.run()
    assert _badges(at).count("live") == 1
    at.button(key="job-stop").click().run()
    job = _wait(user_dir, lambda j: not j.live, timeout=30)
    assert job.state == "stopped" and 0 < job.step < job.total
    at.run()
    assert "stopped" in _badges(at) and "live" not in _badges(at)
    assert not [b for b in at.button if b.key == "job-stop"]
    assert runstore.load_run(job.run_dir).status == "stopped"
    # the stopped run can be rerun with changes: its hyperparameters fill the form, linked to it
    at.number_input(key="tf_epochs").set_value(7).run()
    at.button(key="job-rerun").click().run()
    at.run()
    assert at.number_input(key="tf_epochs").value == 3000
    assert any(f"Rerun of **{job.name}**" in m.value for m in at.markdown)


def _hot_run(folder: Path) -> Path:
    """A recorded run whose loss blows up at lr 0.5 (the rules advise lr 0.05)."""
    d = folder / "hot"
    hparams = Config(optimizer="sgd", lr=0.5, epochs=1, batch_size=100, eval_every=5, probe_every=5,
                     workload="spirals").to_dict()
    w = runstore.RunWriter(d, {"name": "hot", "hparams": hparams, "workload": "spirals"})
    n = 300
    steps = np.arange(1, n + 1)
    loss = 2.3 * np.exp(np.linspace(0, 3, n)) * (1 + 0.1 * np.random.default_rng(0).standard_normal(n))
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (steps, loss), T.lr(0): (steps, np.full(n, 0.5))}), last_step=n)
    w.close()
    return d


def test_rerun_with_changes_prefills_the_form_and_links_the_parent(app, user_dir, tmp_path):
    hot = _hot_run(tmp_path / "mine")
    at = app(tmp_path / "mine")
    at.selectbox(key="train_from_run").set_value(os.path.abspath(hot)).run()
    at.button(key="train_load").click().run()
    at.run()
    assert at.number_input(key="tf_lr").value == pytest.approx(0.5)
    assert at.selectbox(key="tf_optimizer").value == "sgd"
    assert any("Rerun of **hot**" in m.value for m in at.markdown)
    at.number_input(key="tf_lr").set_value(0.1).run()
    assert any("lr 0.5 -> 0.1" in m.value for m in at.markdown)
    at.button(key="train_start").click().run()
    job = _wait(user_dir, lambda j: not j.live)
    meta = runstore.read_meta(job.run_dir)
    assert meta["parent"] == str(hot.resolve())
    assert meta["hparams"] == {**json.loads(json.dumps(runstore.read_meta(hot)["hparams"])), "lr": 0.1}
    assert "lr 0.5 -> 0.1" in meta["description"]


def _open(at: AppTest, page: str, run: Path | None = None) -> AppTest:
    if run is not None:
        at.session_state["current_run"] = os.path.abspath(run)
    at.switch_page(f"dashboard/pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_apply_on_an_advice_card_reruns_with_exactly_the_advised_change(app, user_dir, tmp_path):
    hot = _hot_run(tmp_path / "mine")
    at = _open(app(tmp_path / "mine"), "overview", hot)
    apply = [b for b in at.button if b.label.startswith("Apply:")]
    assert [b.label for b in apply] == ["Apply: lr 0.5 -> 0.05"], [b.label for b in at.button]
    apply[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    # one click: the Train page opens on the new job, linked to its parent
    assert "### Train" in [m.value for m in at.markdown]
    assert any(f"rerun of `{hot.name}`" in c.value for c in at.caption)
    job = _wait(user_dir, lambda j: not j.live)
    assert job.state == "finished", job.error
    meta = runstore.read_meta(job.run_dir)
    parent_hp = runstore.read_meta(hot)["hparams"]
    assert meta["parent"] == str(hot.resolve())
    assert {k: v for k, v in meta["hparams"].items() if parent_hp[k] != v} == {"lr": 0.05}
    assert "lr 0.5 -> 0.05" in meta["description"] and "Learning rate too high" in meta["description"]


def test_rerun_with_changes_from_a_run_page(app, tmp_path):
    hot = _hot_run(tmp_path / "mine")
    at = _open(app(tmp_path / "mine"), "gradients", hot)
    at.button(key="rerun-Gradients").click().run()
    assert "### Train" in [m.value for m in at.markdown]
    assert at.number_input(key="tf_lr").value == pytest.approx(0.5)
    assert any("Rerun of **hot**" in m.value for m in at.markdown)


def test_a_crashed_run_shows_its_error_and_log_on_its_page(app, tmp_path):
    folder = tmp_path / "mine"
    w = runstore.RunWriter(folder / "crashed", {"name": "crashed", "hparams": Config().to_dict()})
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (np.arange(50), np.linspace(2, 1, 50))}), last_step=49)
    w.update_meta(error="RuntimeError: CUDA out of memory")
    w.close("failed")
    (folder / "crashed" / "train.log").write_text("[####----] 49/230\nTraceback (most recent call last):\n"
                                                  "RuntimeError: CUDA out of memory\n")
    at = _open(app(folder), "overview", folder / "crashed")
    assert any("CUDA out of memory" in e for e in _errors(at))
    assert any("Traceback" in c.value and "49/230" in c.value for c in at.code)


def test_runs_page_shows_live_jobs_and_the_limit(app, user_dir):
    mgr = JobManager(user_dir, devices=["cpu"], max_jobs=1)
    job = mgr.start(Config(workload="spirals", epochs=3000, batch_size=100, eval_every=50), name="background job")
    at = _open(app(), "runs")
    caption = next(c.value for c in at.caption if c.value.startswith("Training jobs:"))
    assert caption.startswith("Training jobs: 1 of 1 running") and "CPU cores" in caption
    assert any("background job" in m.value for m in at.markdown)
    mgr.stop(job.run_dir)


def test_a_run_left_running_by_a_dead_process_says_it_did_not_finish(app, tmp_path):
    folder = tmp_path / "mine"
    w = runstore.RunWriter(folder / "orphan", {"name": "orphan", "hparams": Config().to_dict()})
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (np.arange(50), np.linspace(2, 1, 50))}), last_step=49)
    w._con.close()  # the writer dies without closing the run: run.json still says "running"
    meta = runstore.read_meta(folder / "orphan")
    runstore.write_json_atomic(folder / "orphan" / "run.json", {**meta, "pid": _dead_pid()})
    at = _open(app(folder), "overview", folder / "orphan")
    assert "not finished" in _badges(at)
    assert any("Not finished" in w.value for w in at.warning)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid
