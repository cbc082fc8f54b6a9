"""Every page of the Streamlit app, driven through streamlit.testing's AppTest on synthetic runs
written with runstore.RunWriter (a healthy run, runs with planted faults, a run with only a loss,
a broken folder, and a live run)."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.synthetic import SyntheticSpec, write_synthetic_run
from dashboard.ui.guard import NOT_SHOWN
from diagnostics import Thresholds
from runstore import Batch, RunWriter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("runs")
    write_synthetic_run(d / "dead_relu", SyntheticSpec(steps=800, layers=4, fault="dead_relu", name="dead-relu",
                                                        lr=0.5, seed=1))
    write_synthetic_run(d / "healthy", SyntheticSpec(steps=800, layers=4, name="healthy", seed=0))
    write_synthetic_run(d / "vanishing", SyntheticSpec(steps=800, layers=4, fault="vanishing", name="vanishing",
                                                        seed=2))
    w = RunWriter(d / "loss_only", {"name": "loss-only", "hparams": {"lr": 0.1}})
    steps = np.arange(300)
    w.write(Batch(scalars={"train/loss": (steps, 2.0 / (1 + steps / 50.0))}), last_step=299)
    w.close()
    (d / "broken").mkdir()
    (d / "broken" / "run.json").write_text("{this is not json")
    return d


def path_of(runs_dir: Path, name: str) -> str:
    return os.path.abspath(runs_dir / name)


@pytest.fixture
def make_app(monkeypatch):
    def make(*folders, extra=()) -> AppTest:
        argv = ["app.py", "--no-samples", "--refresh", "0.5"]
        for f in folders:
            argv += ["--runs-dir", str(f)]
        monkeypatch.setattr(sys, "argv", argv + list(extra))
        return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    return make


def open_page(at: AppTest, key: str, run: str | None = None) -> AppTest:
    if not at._tree:  # AppTest needs one run before it can switch to a registered page
        at.run()
    if run is not None:
        at.session_state["current_run"] = run
    at.switch_page(f"dashboard/pages/{key}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if NOT_SHOWN in e.value]  # the page failed (ui/guard caught it)
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by their Streamlit key."""
    out = {}
    for c in at.get("plotly_chart"):
        out[c.proto.id.split("-", 2)[2]] = json.loads(c.proto.spec)
    return out


def arr(v) -> np.ndarray:
    """A trace's x or y as numbers (Plotly sends numpy arrays as base64 typed arrays)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).astype(float)
    return np.array([np.nan if x is None else x for x in v], dtype=float)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption]
    for kind in ("info", "success", "warning", "error"):
        parts += [e.value for e in getattr(at, kind)]
    return "\n".join(parts)


# -- Runs page -------------------------------------------------------------------------------------
def test_runs_page_lists_runs_with_status_losses_and_warning_counts(runs_dir, make_app):
    at = make_app(runs_dir).run()
    assert not at.exception
    df = at.get("dataframe")[0].value.set_index("run")
    assert {"dead-relu", "healthy", "vanishing", "loss-only", "broken"} <= set(df.index)
    assert df.loc["dead-relu", "critical"] >= 1
    assert df.loc["healthy", "critical"] == 0 and df.loc["healthy", "warnings"] == 0
    assert df.loc["healthy", "status"] == "finished"
    assert df.loc["broken", "status"] == "unreadable"
    assert df.loc["healthy", "steps"] == 799
    assert 0 < df.loc["healthy", "train loss"] < 1.0
    # the broken folder gets an error card of its own; everything else still loads
    assert any("broken" in e.value and "could not be read" in e.value for e in at.error)


def test_runs_page_filter_and_sort(runs_dir, make_app):
    at = make_app(runs_dir).run()
    at.text_input(key="runs_filter").set_value("vanish").run()
    assert at.get("dataframe")[0].value["run"].tolist() == ["vanishing"]
    at.text_input(key="runs_filter").set_value("").run()
    at.selectbox(key="runs_sort").set_value("most warnings").run()
    df = at.get("dataframe")[0].value
    totals = (df["critical"] + df["warnings"]).tolist()
    known = [t for t in totals if not pd.isna(t)]  # an unreadable run has no counts: listed last
    assert known == sorted(known, reverse=True) and totals[:len(known)] == known
    at.toggle(key="runs_warn").set_value(True).run()
    df = at.get("dataframe")[0].value
    assert "healthy" not in set(df["run"]) and len(df) >= 2


def test_selecting_rows_picks_the_run_the_other_pages_show(runs_dir, make_app):
    at = make_app(runs_dir).run()
    table = at.get("dataframe")[0]
    names = table.value["run"].tolist()
    at.session_state[table.key] = {"selection": {"rows": [names.index("vanishing"), names.index("healthy")],
                                                 "columns": []}}
    at.run()
    assert at.session_state["selected_runs"] == [path_of(runs_dir, "vanishing"), path_of(runs_dir, "healthy")]
    assert at.sidebar.selectbox(key="run").value == path_of(runs_dir, "vanishing")
    assert at.session_state["current_run"] == path_of(runs_dir, "vanishing")
    open_page(at, "overview")
    assert "Overview · vanishing" in texts(at)
    # Compare starts from the picked runs
    open_page(at, "compare")
    assert at.multiselect(key="compare_runs").value == [path_of(runs_dir, "vanishing"), path_of(runs_dir, "healthy")]


# -- Overview --------------------------------------------------------------------------------------
def test_overview_of_a_faulty_run_shows_charts_and_advice_cards(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "overview", path_of(runs_dir, "dead_relu"))
    figs = charts(at)
    assert {"ov-loss", "ov-accuracy", "ov-lr"} <= set(figs)
    assert figs["ov-loss"]["layout"]["xaxis"]["title"]["text"] == "optimizer step"
    assert figs["ov-loss"]["layout"]["hovermode"] == "x unified"
    jumps = [b for b in at.button if b.key and b.key.startswith("jump-")]
    assert jumps, "a faulty run must show advice cards"
    assert "Dead ReLU" in texts(at)
    assert any(b.label == "Show on Activations" for b in jumps)
    assert "critical" in texts(at)


def test_overview_of_a_healthy_run_has_no_advice_cards(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "overview", path_of(runs_dir, "healthy"))
    assert not [b for b in at.button if b.key and b.key.startswith("jump-")]
    assert any("No problems found" in s.value for s in at.success)
    assert {"ov-loss", "ov-accuracy", "ov-lr"} <= set(charts(at))


def test_overview_controls_change_the_loss_chart(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "overview", path_of(runs_dir, "healthy"))
    loss = charts(at)["ov-loss"]
    assert loss["layout"]["yaxis"]["type"] == "log"
    assert len([t for t in loss["data"] if t["name"].startswith("train")]) == 2  # raw + smoothed
    at.toggle(key="ov_log").set_value(False).run()
    at.slider(key="ov_smooth").set_value(0.0).run()
    loss = charts(at)["ov-loss"]
    assert loss["layout"]["yaxis"].get("type") != "log"
    assert [t["name"] for t in loss["data"] if t["name"].startswith("train")] == ["train"]


def test_advice_card_jumps_to_its_chart_with_the_layers_picked(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "overview", path_of(runs_dir, "dead_relu"))
    jump = next(b for b in at.button if b.key and b.key.startswith("jump-") and b.label == "Show on Activations")
    jump.click().run()
    assert not at.exception
    assert "Activations · dead-relu" in texts(at)
    focus = at.session_state["focus"]
    picked = at.multiselect(key=f"act_layers::{path_of(runs_dir, 'dead_relu')}").value
    assert picked and set(picked) <= set(focus["layers"])
    assert any("Showing the evidence for" in i.value for i in at.info)
    # the grid draws exactly the finding's layers
    grid = charts(at)["act-grid"]
    assert {t["legendgroup"] for t in grid["data"]} == set(picked)


def test_advice_cards_are_compact_with_the_evidence_in_words(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "overview", path_of(runs_dir, "dead_relu"))
    shown = texts(at)
    assert "What to try:" in shown and "Suggested change:" in shown
    # layers are named with their module type; the evidence sits behind an expander, in words
    assert "(ReLU)" in "\n".join(c.value for c in at.caption)
    evidence = [e for e in at.expander if e.label.startswith("Evidence (")]
    assert evidence
    rows = [line for e in evidence for m in e.markdown for line in m.value.splitlines()]
    assert rows and all(line.startswith("- ") and ": **" in line for line in rows)
    keys = [line[2:].split(": **")[0] for line in rows]
    assert all("_" not in k and k[0].isupper() for k in keys), keys  # 'frac_dead_x' -> 'Fraction dead x'
    assert "None" not in "\n".join(rows) and "None" not in shown


def test_run_names_are_shown_as_text_not_markdown(tmp_path, make_app):
    write_synthetic_run(tmp_path / "odd", SyntheticSpec(steps=60, layers=2, val_every=30, flush_steps=30,
                                                        name="**big** [link](http://example.com) $x$"))
    at = open_page(make_app(tmp_path), "overview", path_of(tmp_path, "odd"))
    head = next(m.value for m in at.markdown if m.value.startswith("### Overview"))
    assert head == r"### Overview · \*\*big\*\* \[link\](http\://example.com) \$x\$"


# -- links: the URL keeps the run and the layers -------------------------------------------------
def test_a_link_reopens_the_same_run_and_layers(runs_dir, make_app):
    path = path_of(runs_dir, "healthy")
    at = make_app(runs_dir)
    at.query_params["run"] = "healthy"
    at.query_params["act_layers"] = ["net.1", "no-such-layer"]  # unknown values are dropped
    at.switch_page("dashboard/pages/activations.py").run()
    assert not at.exception
    assert "Activations · healthy" in texts(at)
    assert at.multiselect(key=f"act_layers::{path}").value == ["net.1"]
    assert at.query_params["run"] == "healthy" and at.query_params["act_layers"] == "net.1"
    # later choices go to the URL too, so a reload or a shared link shows them
    at.multiselect(key=f"act_layers::{path}").set_value(["net.1", "net.3"]).run()
    assert at.query_params["act_layers"] == ["net.1", "net.3"]
    at.sidebar.selectbox(key="run").set_value(path_of(runs_dir, "vanishing")).run()
    assert at.query_params["run"] == "vanishing" and "Activations · vanishing" in texts(at)


def test_a_link_to_an_unknown_run_falls_back_and_says_so(runs_dir, make_app):
    at = make_app(runs_dir)
    at.query_params["run"] = "../../etc/passwd"
    at.switch_page("dashboard/pages/overview.py").run()
    assert not at.exception
    assert any("not in the scanned folders" in w.value for w in at.sidebar.warning)
    # another run is shown, and the URL names that one
    assert at.query_params["run"] == os.path.basename(at.session_state["current_run"])


# -- one-run pages ---------------------------------------------------------------------------------
def test_activations_page_layer_picker_drives_the_charts(runs_dir, make_app):
    path = path_of(runs_dir, "healthy")
    at = open_page(make_app(runs_dir), "activations", path)
    figs = charts(at)
    assert {"act-grid", "act-heatmap", "act-hist-step"} <= set(figs)
    assert figs["act-heatmap"]["data"][0]["type"] == "heatmap"
    at.multiselect(key=f"act_layers::{path}").set_value(["net.1"]).run()
    grid = charts(at)["act-grid"]
    assert {t["legendgroup"] for t in grid["data"]} == {"net.1"}
    row_titles = {v["title"]["text"] for k, v in grid["layout"].items() if k.startswith("yaxis")}
    assert {"mean", "std (symlog)", "dead units (fraction)"} <= row_titles
    # the histogram-at-step chart follows the step picked
    steps_key = f"act_step::{path}::{at.selectbox(key=f'act_hist_layer::{path}').value}"
    at.select_slider(key=steps_key).set_value(100).run()
    assert "at step 100" in charts(at)["act-hist-step"]["layout"]["title"]["text"]


def test_gradients_page_draws_the_flow_verdicts_with_thresholds(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "gradients", path_of(runs_dir, "vanishing"))
    figs = charts(at)
    assert {"grad-flow", "grad-norms", "grad-ratio", "grad-heatmap", "grad-hist-step"} <= set(figs)
    assert figs["grad-norms"]["layout"]["yaxis"]["type"] == "log"
    flow = figs["grad-flow"]
    vanish = next(s["y0"] for s in flow["layout"]["shapes"] if s.get("name") == "vanish_ratio")
    # the planted fault: the first layer's statistic (its segment) sits below the vanishing line
    seg = next(t for t in flow["data"] if t.get("legendgroup") == "net.0.weight" and "→ vanishing" in t["name"])
    assert arr(seg["y"])[0] < vanish
    table = next(d.value for d in at.get("dataframe") if "verdict" in d.value.columns)
    assert table["verdict"].iloc[0] == "vanishing"
    explode = [s["y0"] for s in figs["grad-ratio"]["layout"]["shapes"] if s.get("name") == "explode_ratio"]
    assert explode and explode[0] > 1


def test_updates_page_draws_the_verdict_band_and_its_table(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "updates", path_of(runs_dir, "healthy"))
    fig = charts(at)["upd-ratios"]
    band = next(s for s in fig["layout"]["shapes"] if s.get("name") == "in range")
    th = Thresholds()
    assert (band["y0"], band["y1"]) == pytest.approx((th.update_ratio_low, th.update_ratio_large))
    assert fig["layout"]["yaxis"]["type"] == "log"
    names = {s.get("name") for s in fig["layout"]["shapes"]}
    assert {"update_ratio_guide_cs231n", "update_ratio_guide_notes"} <= names
    at.toggle(key="upd_guides").set_value(False).run()
    names = {s.get("name") for s in charts(at)["upd-ratios"]["layout"]["shapes"]}
    assert "update_ratio_guide_cs231n" not in names and "update_ratio_low" in names
    table = at.get("dataframe")[0].value
    assert set(table["verdict"]) == {"in range"}


def test_predictions_page_shows_reliability_with_ece(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "predictions", path_of(runs_dir, "healthy"))
    figs = charts(at)
    assert {"pred-conf", "pred-entropy", "pred-heatmap", "pred-reliability"} <= set(figs)
    assert "ECE" in figs["pred-reliability"]["layout"]["title"]["text"]
    # the train split has no calibration table: a message instead of an empty diagram
    at.get("button_group")[0].set_value("train").run()
    assert "pred-reliability" not in charts(at)
    assert any("calibration table" in i.value for i in at.info)


def test_compare_page_overlays_runs_and_lists_differing_hparams(runs_dir, make_app):
    at = make_app(runs_dir).run()
    at.session_state["compare_runs"] = [path_of(runs_dir, "healthy"), path_of(runs_dir, "dead_relu")]
    open_page(at, "compare")
    figs = charts(at)
    names = {t["name"] for t in figs["cmp-loss"]["data"]}
    assert {"healthy · train", "dead-relu · train", "healthy · val", "dead-relu · val"} <= names
    colors = {t["name"]: t["line"]["color"] for t in figs["cmp-loss"]["data"]}
    assert colors["healthy · train"] != colors["dead-relu · train"]
    assert colors["healthy · train"] == colors["healthy · val"]
    hp = next(d.value for d in at.get("dataframe") if d.value.index.name == "hyperparameter")
    assert "lr" in hp.index and "seed" in hp.index and "model" not in hp.index
    at.selectbox(key="cmp_metric").set_value("val/accuracy").run()
    assert {t["name"] for t in charts(at)["cmp-metric"]["data"]} == {"healthy", "dead-relu"}


def test_run_colours_are_the_same_on_every_page(runs_dir, make_app):
    at = make_app(runs_dir).run()
    at.session_state["compare_runs"] = [path_of(runs_dir, "healthy"), path_of(runs_dir, "vanishing")]
    open_page(at, "compare")
    cmp_color = next(t["line"]["color"] for t in charts(at)["cmp-loss"]["data"] if t["name"] == "vanishing · train")
    open_page(at, "overview", path_of(runs_dir, "vanishing"))
    ov_color = next(t["line"]["color"] for t in charts(at)["ov-loss"]["data"] if t["name"] == "train")
    assert cmp_color == ov_color


# -- missing and broken data -----------------------------------------------------------------------
@pytest.mark.parametrize("page, message", [("activations", "no activation statistics"),
                                           ("gradients", "no gradient statistics"),
                                           ("updates", "no update-to-weight ratios"),
                                           ("predictions", "no prediction statistics")])
def test_a_page_whose_data_the_run_lacks_says_so_instead_of_an_empty_chart(runs_dir, make_app, page, message):
    at = open_page(make_app(runs_dir), page, path_of(runs_dir, "loss_only"))
    assert not charts(at)
    assert any(message in i.value for i in at.info)


def test_overview_of_a_loss_only_run_draws_the_loss_and_explains_the_rest(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "overview", path_of(runs_dir, "loss_only"))
    assert set(charts(at)) == {"ov-loss"}
    info = "\n".join(i.value for i in at.info)
    assert "no accuracy" in info and "no learning-rate record" in info


def test_a_broken_run_shows_an_error_card_and_the_app_keeps_working(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "overview", path_of(runs_dir, "broken"))
    assert any("could not be read" in e.value and "run.json" in e.value for e in at.error)
    assert not charts(at)
    at.sidebar.selectbox(key="run").set_value(path_of(runs_dir, "healthy")).run()
    assert not at.exception and "ov-loss" in charts(at)


# -- live runs -------------------------------------------------------------------------------------
def test_a_live_run_shows_a_badge_and_new_steps_without_losing_selections(tmp_path, make_app):
    writer = write_synthetic_run(tmp_path / "live", SyntheticSpec(steps=400, layers=3, name="live-run", status=None))
    try:
        path = os.path.abspath(tmp_path / "live")
        at = open_page(make_app(tmp_path), "activations", path)
        assert ":green-badge[:material/fiber_manual_record: live]" in texts(at)
        assert "step 399" in texts(at)
        at.multiselect(key=f"act_layers::{path}").set_value(["net.3"]).run()
        # the writer appends 200 more steps; the next refresh shows them, the selection stays
        steps = np.arange(400, 600)
        ls = np.arange(400, 600, 25)
        writer.write(Batch(scalars={"train/loss": (steps, np.full(200, 0.3)),
                                    "act/net.3/mean": (ls, np.full(len(ls), 0.5)),
                                    "act/net.3/std": (ls, np.full(len(ls), 1.0))}), last_step=599)
        time.sleep(0.6)  # > the refresh throttle of --refresh 0.5
        at.run()
        assert "step 599" in texts(at)
        assert at.multiselect(key=f"act_layers::{path}").value == ["net.3"]
        grid = charts(at)["act-grid"]
        assert max(arr(t["x"]).max() for t in grid["data"]) == 575
    finally:
        writer.close("finished")
    time.sleep(0.6)
    at.run()
    assert ":blue-badge[finished]" in texts(at) and "green-badge" not in texts(at)


# -- where runs come from --------------------------------------------------------------------------
def test_runs_dir_option_takes_several_folders_and_the_sidebar_adds_more(tmp_path, make_app):
    for name in ("a", "b", "c"):
        write_synthetic_run(tmp_path / name / f"run_{name}", SyntheticSpec(steps=60, layers=2, name=f"run-{name}",
                                                                         val_every=30, flush_steps=30))
    at = make_app(extra=["--runs-dir", f"{tmp_path / 'a'},{tmp_path / 'b'}"]).run()
    assert set(at.get("dataframe")[0].value["run"]) == {"run-a", "run-b"}
    at.sidebar.text_input(key="extra_dirs").set_value(str(tmp_path / "c")).run()
    assert set(at.get("dataframe")[0].value["run"]) == {"run-a", "run-b", "run-c"}


def test_unknown_options_are_reported_not_fatal(tmp_path, make_app):
    at = make_app(tmp_path, extra=["--run-dir", "x"]).run()
    assert not at.exception
    assert any("--run-dir" in w.value for w in at.sidebar.warning)


# -- the bundled sample runs -----------------------------------------------------------------------
SAMPLES = ROOT / "sample_runs"
SAMPLE_DIRS = sorted(p for p in SAMPLES.glob("*") if (p / "run.json").is_file())
needs_samples = pytest.mark.skipif(not SAMPLE_DIRS, reason="sample_runs/ holds no runs yet "
                                                           "(python -m playground make-samples writes them)")


@pytest.fixture
def default_app(monkeypatch) -> AppTest:
    """The app as `streamlit run app.py` starts it: no options, so it opens on the sample runs."""
    monkeypatch.setattr(sys, "argv", ["app.py"])
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


@needs_samples
def test_the_app_opens_on_the_sample_runs(default_app):
    at = default_app.run()
    assert not at.exception
    listed = set(at.get("dataframe")[0].value["path"])
    assert {os.path.abspath(p) for p in SAMPLE_DIRS} <= listed
    assert not any("could not be read" in e.value for e in at.error)


@needs_samples
@pytest.mark.parametrize("page", ["overview", "activations", "gradients", "updates", "predictions"])
def test_every_page_draws_every_sample_run(default_app, page):
    at = default_app.run()
    for run in SAMPLE_DIRS:
        open_page(at, page, os.path.abspath(run))
        assert charts(at), f"{page} of {run.name} drew no chart"
        # nothing failed to read or compute (error boxes may still show what the run did wrong:
        # "Training failed: ...", a layer with no gradient at all)
        errors = [e.value for e in list(at.error) + list(at.warning) if "could not" in e.value]
        assert not errors, f"{page} of {run.name}: {errors}"


@needs_samples
@pytest.mark.skipif(not (SAMPLES / "baseline").is_dir() or not (SAMPLES / "dying_relu").is_dir(),
                    reason="needs the baseline and dying_relu samples")
def test_sample_advice_cards_for_the_faulty_run_and_none_for_the_baseline(default_app):
    at = open_page(default_app, "overview", os.path.abspath(SAMPLES / "dying_relu"))
    assert [b for b in at.button if b.key and b.key.startswith("jump-")]
    assert "Dead ReLU" in texts(at)
    open_page(at, "overview", os.path.abspath(SAMPLES / "baseline"))
    assert not [b for b in at.button if b.key and b.key.startswith("jump-")]
    assert any("No problems found" in s.value for s in at.success)


def test_predictions_page_draws_the_passed_loss_beside_the_recomputed_cross_entropy(tmp_path, make_app):
    """mismatched_targets' evidence is on the page its card opens: the loss passed with the logits
    and the cross-entropy the probes recomputed from those logits and targets, as recorded. A run
    without the recomputed value (older probes, no targets) gets no such chart."""
    steps = np.arange(1, 101)
    loss = 2.0 / (1 + steps / 20.0)
    w = RunWriter(tmp_path / "prefetched", {"name": "prefetched"})
    w.write(Batch(scalars={"train/loss": (steps, loss), "train/cross_entropy": (steps, 1.75 * loss),
                           "train/confidence": (steps, 0.3 + 0.005 * steps)}), last_step=100)
    w.close()
    at = open_page(make_app(tmp_path), "predictions", path_of(tmp_path, "prefetched"))
    traces = charts(at)["pred-xent"]["data"]
    by_name = {t["name"]: arr(t["y"]) for t in traces}
    passed = by_name["loss passed with the logits"]
    recomputed = by_name["cross-entropy of the logits against the targets"]
    np.testing.assert_allclose(passed, loss)
    np.testing.assert_allclose(recomputed, 1.75 * loss)


def test_predictions_page_of_a_run_without_the_recomputed_cross_entropy_draws_no_such_chart(runs_dir, make_app):
    at = open_page(make_app(runs_dir), "predictions", path_of(runs_dir, "healthy"))
    assert "pred-conf" in charts(at) and "pred-xent" not in charts(at)
