"""Run discovery, command-line settings, cached loading and the tables, without Streamlit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard import navigation
from dashboard.colors import RUN_PALETTE, assign_run_colors
from dashboard.discovery import RUN, TENSORBOARD, find_runs
from dashboard.extract import act_stats, calibration, metric_tags, ratio_series, splits
from dashboard.layers import activation_modules, default_pick, grad_params, weight_layers
from dashboard.loading import RunHandle, load_handle
from dashboard.settings import SAMPLE_RUNS, USER_RUNS, parse_args
from dashboard.summary import differing_hparams, final_value, key_hparams, run_row, varying_keys
from dashboard.synthetic import SyntheticSpec, write_synthetic_run
from runstore import Batch


def small(path: Path, **kw):
    spec = dict(steps=100, layers=3, val_every=50, flush_steps=50)
    spec.update(kw)
    return write_synthetic_run(path, SyntheticSpec(**spec))


# -- settings --------------------------------------------------------------------------------------
def test_runs_dir_is_repeatable_and_comma_separated_and_samples_come_last():
    s, problems = parse_args(["--runs-dir", "a,b", "--runs-dir", " c ", "--refresh", "1.5"])
    assert [str(p) for p in s.runs_dirs] == ["a", "b", "c", str(USER_RUNS), str(SAMPLE_RUNS)]
    assert s.refresh_s == 1.5 and not problems and s.webgl


def test_settings_report_bad_options_in_words():
    s, problems = parse_args(["--no-samples", "--refresh", "-1", "--bogus"])
    assert SAMPLE_RUNS not in s.runs_dirs
    assert s.refresh_s > 0
    assert any("--bogus" in p for p in problems) and any("--refresh" in p for p in problems)
    assert parse_args(["--no-webgl"])[0].webgl is False


# -- discovery -------------------------------------------------------------------------------------
def test_find_runs_lists_run_dirs_and_tensorboard_logs_but_not_a_runs_own_mirror(tmp_path):
    small(tmp_path / "sweep" / "lr0.1")
    small(tmp_path / "sweep" / "lr0.01")
    (tmp_path / "sweep" / "lr0.1" / "tb").mkdir()
    (tmp_path / "sweep" / "lr0.1" / "tb" / "events.out.tfevents.1.host").write_bytes(b"")
    (tmp_path / "tb" / "exp").mkdir(parents=True)
    (tmp_path / "tb" / "exp" / "events.out.tfevents.2.host").write_bytes(b"")
    (tmp_path / "notes").mkdir()
    refs, notes = find_runs([tmp_path, tmp_path / "missing"])
    found = {r.label: r.kind for r in refs}
    assert found == {"sweep/lr0.01": RUN, "sweep/lr0.1": RUN, "tb/exp": TENSORBOARD}
    assert all(os.path.isabs(r.path) for r in refs)
    assert any("missing" in n and "does not exist" in n for n in notes)


def test_find_runs_does_not_list_a_run_twice_when_folders_overlap(tmp_path):
    small(tmp_path / "a" / "r")
    refs, _ = find_runs([tmp_path, tmp_path / "a"])
    assert len(refs) == 1


# -- loading ---------------------------------------------------------------------------------------
def test_handle_reads_appended_data_and_status_changes(tmp_path):
    w = small(tmp_path / "r", status=None)
    h = load_handle(tmp_path / "r")
    assert h.error is None and h.run.status == "running" and h.is_live and h.run.last_step == 99
    v = h.version
    h.sync(min_interval=0)
    assert h.version == v  # nothing changed on disk: no re-read
    w.write(Batch(scalars={"train/loss": (np.arange(100, 150), np.full(50, 0.2))}), last_step=149)
    w.close("stopped")
    h.sync(min_interval=0)
    assert h.version > v and h.run.last_step == 149 and h.run.status == "stopped" and not h.is_live
    assert h.run.series("train/loss").index[-1] == 149


def test_handle_reloads_a_folder_overwritten_by_another_run(tmp_path):
    small(tmp_path / "r", steps=100, name="first")
    h = load_handle(tmp_path / "r")
    write_synthetic_run(tmp_path / "r", SyntheticSpec(steps=60, layers=2, name="second", flush_steps=30,
                                                      val_every=30), overwrite=True)
    h.sync(min_interval=0)
    assert h.run.name == "second" and h.run.last_step == 59
    assert len(h.run.series("train/loss")) == 60


def test_broken_folders_become_an_error_message_not_an_exception(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{nope")
    h = load_handle(tmp_path / "bad")
    assert h.run is None and "run.json" in h.error and "corrupt" in h.error
    assert h.findings() == ([], None)
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "run.json").write_text("{}")
    h = load_handle(tmp_path / "gone")
    os.remove(tmp_path / "gone" / "run.json")
    os.rmdir(tmp_path / "gone")
    h.sync(min_interval=0)
    assert h.run is None and "does not exist" in h.error


def test_findings_are_sorted_most_severe_first_and_cached(tmp_path):
    small(tmp_path / "r", steps=600, fault="nan", val_every=100, flush_steps=100)
    h = load_handle(tmp_path / "r")
    found, err = h.findings()
    assert err is None and found
    ranks = [{"critical": 0, "warning": 1, "info": 2}[f.severity] for f in found]
    assert ranks == sorted(ranks)
    assert h.findings()[0] is found  # same version: not recomputed


def test_tensorboard_log_loads_through_diagnostics(tmp_path):
    tb = pytest.importorskip("torch.utils.tensorboard")
    w = tb.SummaryWriter(str(tmp_path / "exp"))
    for s in range(30):
        w.add_scalar("train/loss", 1.0 / (s + 1), s)
    w.close()
    refs, _ = find_runs([tmp_path])
    assert [r.kind for r in refs] == [TENSORBOARD]
    h = RunHandle(refs[0]).sync(min_interval=0)
    assert h.error is None and len(h.run.series("train/loss")) == 30


# -- what the pages extract ------------------------------------------------------------------------
def test_layers_come_in_network_order_and_the_ratio_uses_weight_layers(tmp_path):
    small(tmp_path / "r", layers=4)
    run = load_handle(tmp_path / "r").run
    assert activation_modules(run) == ["net.0", "net.1", "net.2", "net.3", "net.4", "net.5", "net.6"]
    assert grad_params(run)[:2] == ["net.0.weight", "net.0.bias"]
    assert weight_layers(run) == ["net.0.weight", "net.2.weight", "net.4.weight", "net.6.weight"]
    assert default_pick([str(i) for i in range(20)], 5) == ["0", "5", "10", "14", "19"]
    stats = act_stats(run, ["net.1", "net.0"], ("mean", "frac_saturated"))
    assert set(stats) == {"mean"}  # saturation is NaN throughout for ReLU/Linear: left out
    assert splits(run) == ["train", "val"]
    assert "train/loss" in metric_tags(run) and not any(t.startswith("act/") for t in metric_tags(run))
    assert [s for s, _ in calibration(run, "val")] == [49, 99]


def test_ratio_series_aligns_steps_and_hides_division_by_zero():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 25, 50])
    b = pd.Series([2.0, 0.0, 1.0], index=[25, 50, 75])
    r = ratio_series(a, b)
    assert list(r.index) == [25, 50] and r.iloc[0] == 1.0 and np.isnan(r.iloc[1])


def test_run_row_and_hparam_tables(tmp_path):
    small(tmp_path / "a", lr=0.1, name="a")
    small(tmp_path / "b", lr=0.01, name="b")
    ha, hb = load_handle(tmp_path / "a"), load_handle(tmp_path / "b")
    row = run_row(ha.ref, ha.run, [], first_keys=["lr"])
    assert row["run"] == "a" and row["status"] == "finished" and row["steps"] == 99 and row["lr"] == 0.1
    assert row["hyperparameters"].startswith("lr=0.1")
    assert varying_keys([ha.run.hparams, hb.run.hparams]) == ["lr"]
    table = differing_hparams({"a": ha.run.hparams, "b": hb.run.hparams})
    assert list(table.index) == ["lr"] and table.loc["lr"].tolist() == ["0.1", "0.01"]
    full = differing_hparams({"a": ha.run.hparams, "b": hb.run.hparams}, only_differing=False)
    assert "model" in full.index
    assert differing_hparams({"a": {"x": 1}, "b": {}}).loc["x"].tolist() == ["1", "—"]


def test_final_value_averages_the_tail_but_reports_a_diverged_end():
    assert final_value(pd.Series(np.r_[np.full(80, 5.0), np.full(20, 1.0)])) == 1.0
    assert np.isnan(final_value(pd.Series([1.0, 0.5, np.nan])))
    assert np.isnan(final_value(pd.Series([], dtype=float)))
    assert key_hparams({"zeta": 1, "lr": 0.1, "model": "mlp"}) == "model=mlp, lr=0.1, zeta=1"


def test_run_colours_stay_put_as_runs_come_and_go():
    c1 = assign_run_colors(["a", "b"])
    c2 = assign_run_colors(["c", "b", "a"], c1)
    assert c2["a"] == c1["a"] and c2["b"] == c1["b"] and c2["c"] not in (c1["a"], c1["b"])
    many = assign_run_colors([str(i) for i in range(len(RUN_PALETTE))])
    assert len(set(many.values())) == len(RUN_PALETTE)


def test_every_finding_chart_has_a_page():
    from diagnostics.finding import CHARTS

    root = Path(__file__).resolve().parent.parent
    for chart in CHARTS:
        assert navigation.page(chart) is not None, chart
    for page in navigation.PAGES:
        assert (root / page.script).is_file(), page.script
