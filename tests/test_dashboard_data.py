"""Run discovery, command-line settings, cached loading and the tables, without Streamlit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard import navigation, status
from dashboard.colors import PALETTE, SEVERITY_COLORS, layer_colors, run_color, run_colors
from dashboard.discovery import RUN, TENSORBOARD, RunRef, find_runs, run_ids
from dashboard.extract import act_stats, calibration, metric_tags, ratio_series, splits
from dashboard.format import TABLE_FORMAT, md_escape, number, value, words
from dashboard.loading import RunHandle, load_handle
from dashboard.settings import SAMPLE_RUNS, USER_RUNS, parse_args
from dashboard.summary import differing_hparams, final_value, key_hparams, run_row, varying_keys
from dashboard.synthetic import SyntheticSpec, write_synthetic_run
from dashboard.ui.pickers import default_pick
from diagnostics import SEVERITIES
from runstore import Batch, schema
from runstore.layers import RunLayers


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
    layers = RunLayers(run)
    assert layers.activation_modules == ["net.0", "net.1", "net.2", "net.3", "net.4", "net.5", "net.6"]
    assert layers.grad_params[:2] == ["net.0.weight", "net.0.bias"]
    assert layers.weight_layers == ["net.0.weight", "net.2.weight", "net.4.weight", "net.6.weight"]
    # what the pickers and legends read: a Sequential child's number alone says nothing
    assert layers.model.label("net.0") == "net.0 (Linear)" and layers.model.label("net.1") == "net.1 (ReLU)"
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
    row = run_row(ha.ref, ha.run, [], first_keys=["seed", "lr"])
    assert row["run"] == "a" and row["status"] == "finished" and row["steps"] == 99 and row["lr"] == 0.1
    # the differing ones first; lr has a column of its own
    assert row["hyperparameters"].startswith("seed=") and "lr=" not in row["hyperparameters"]
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


def _contrast(hex_a: str, hex_b: str) -> float:
    def lum(h):
        r, g, b = (int(h.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4))
        f = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * f[0] + 0.7152 * f[1] + 0.0722 * f[2]
    hi, lo = sorted((lum(hex_a), lum(hex_b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_colours_read_on_the_light_and_the_dark_theme():
    for c in PALETTE:
        assert _contrast(c, "#ffffff") >= 3 and _contrast(c, "#0e1117") >= 3, c


def test_run_colours_depend_on_the_runs_not_on_the_order_they_were_met():
    ids = ["baseline", "lr_too_high", "dying_relu", "sweep/lr0.1"]
    a, b = run_colors(ids), run_colors(list(reversed(ids)))
    assert a == b and len(set(a.values())) == len(ids)  # same in every session, and distinct
    assert run_colors(["baseline"]) == {"baseline": run_color("baseline")}
    many = run_colors([f"run{i}" for i in range(len(PALETTE))])
    assert len(set(many.values())) == len(PALETTE)


def test_neighbouring_layers_get_different_colours():
    names = [f"layer{i}" for i in range(25)]
    colors = layer_colors(names)
    assert all(colors[x] != colors[y] for x, y in zip(names, names[1:]))
    assert layer_colors(names[:3]) == {n: colors[n] for n in names[:3]}  # a layer keeps its colour


def test_run_ids_are_relative_paths_and_stay_unique(tmp_path):
    refs = [RunRef(str(tmp_path / "runs" / "a"), RUN, str(tmp_path / "runs")),
            RunRef(str(tmp_path / "runs" / "sweep" / "b"), RUN, str(tmp_path / "runs")),
            RunRef(str(tmp_path / "samples" / "a"), RUN, str(tmp_path / "samples"))]
    ids = run_ids(refs)
    assert ids[refs[1].path] == "sweep/b"
    assert ids[refs[0].path] == "runs/a" and ids[refs[2].path] == "samples/a"
    assert run_ids(refs) == ids


# -- how values are written ------------------------------------------------------------------------
def test_numbers_never_lose_their_magnitude():
    assert number(3.955e-05) in ("3.95e-05", "3.96e-05")  # not "3.955", not "0.000"
    assert number(0.0003) == "3e-04" and number(0.5) == "0.5" and number(2.0) == "2"
    assert number(12345) == "12,345" and number(True) == "yes" and number(None) == "—"
    assert number(float("nan")) == "nan" and number(np.float32(0.25)) == "0.25"
    # Streamlit's printf %g keeps significant digits where a fixed "%.4f" would print 0.0000
    assert TABLE_FORMAT.endswith("g")


def test_evidence_values_and_keys_read_as_words():
    assert value({"relu2": 0.734375, "relu3": 0.5}) == "relu2: 0.734, relu3: 0.5"
    assert value([]) == "none" and value(None) == "—" and value(["a", 1e-7]) == "a, 1e-07"
    assert words("lr_at_blowup") == "Learning rate at blowup"
    assert words("update_ratio_p90_first_half") == "Update ratio 90th percentile first half"


def test_run_derived_text_is_escaped_for_markdown():
    assert md_escape("[click](http://x.io)") == r"\[click\](http\://x.io)"
    assert md_escape("relu_1*2") == r"relu\_1\*2" and md_escape("# big") == r"\# big"
    assert md_escape(":red[alarm] $x$") == r"\:red\[alarm\] \$x\$"
    assert md_escape("two\nlines") == "two lines" and md_escape("dead-relu") == "dead-relu"


def test_every_status_has_one_label_and_colour():
    for s in schema.STATUSES + ("starting", status.UNREADABLE):
        assert s in status.LOOKS and status.look(s).label and status.look(s).help
    assert status.label(schema.RUNNING) == "live" and status.label("odd") == "odd"
    # severity words come from diagnostics; the badges colour exactly those
    assert set(SEVERITY_COLORS) == set(SEVERITIES)


def test_every_finding_chart_has_a_page():
    from diagnostics.finding import CHARTS

    root = Path(__file__).resolve().parent.parent
    for chart in CHARTS:
        assert navigation.page(chart) is not None, chart
    for page in navigation.PAGES:
        assert (root / page.script).is_file(), page.script
