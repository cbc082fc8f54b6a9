"""Pure figure builders and the display-side maths behind them, without Streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboard.calibration import CalibrationTableError, expected_calibration_error, table_ece, table_frame
from dashboard.figures import base
from dashboard.figures.base import Curve, NoDataError, lines_figure
from dashboard.figures.histograms import hist_at_step_figure, hist_heatmap_figure
from dashboard.figures.layers import (Level, Segment, layer_grid_figure, log_layers_figure, ratio_figure, symlog,
                                      symlog_scale)
from dashboard.figures.verdicts import grad_flow_figure, update_ratio_figure
from diagnostics import Thresholds
from dashboard.figures.reliability import reliability_figure
from dashboard.rebin import at_step, rebin, thin_rows
from dashboard.series_ops import ema, minmax_downsample
from runstore import HistSeries


def series(values, start=0) -> pd.Series:
    v = np.asarray(values, dtype=float)
    return pd.Series(v, index=pd.Index(np.arange(start, start + len(v)), name="step"))


# -- downsampling and smoothing --------------------------------------------------------------------
def test_minmax_downsample_bounds_points_and_keeps_every_spike():
    rng = np.random.default_rng(0)
    v = rng.random(100_000)
    v[12_345] = 50.0
    v[67_890] = -50.0
    x, y = minmax_downsample(np.arange(v.size), v, max_points=2000)
    assert len(x) <= 2000
    assert y.max() == 50.0 and y.min() == -50.0
    assert 12_345 in x and 67_890 in x
    assert np.all(np.diff(x) > 0)  # still in step order


def test_minmax_downsample_leaves_short_series_alone_and_turns_inf_into_gaps():
    x, y = minmax_downsample(np.arange(5), np.array([1, np.inf, 2, np.nan, 3]))
    assert list(x) == [0, 1, 2, 3, 4]
    assert np.isnan(y[1]) and np.isnan(y[3]) and y[4] == 3


def test_ema_is_tensorboards_debiased_average_and_skips_nan():
    out = ema(np.array([1.0, 2.0, 3.0]), 0.5)
    # TensorBoard: last = w*last + (1-w)*x, divided by 1 - w**n
    assert out == pytest.approx([1.0, (0.25 + 1.0) / 0.75, (0.625 + 1.5) / 0.875])
    out = ema(np.array([1.0, np.nan, 1.0]), 0.9)
    assert np.isnan(out[1]) and out[2] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ema(np.ones(3), 1.0)


# -- histograms ------------------------------------------------------------------------------------
def hist(steps, lo, hi, counts) -> HistSeries:
    return HistSeries(np.asarray(steps), np.asarray(lo, float), np.asarray(hi, float),
                      np.asarray(counts, dtype=np.float32))


def test_rebin_puts_histograms_with_different_ranges_on_one_grid_and_keeps_counts():
    h = hist([0, 10], [-1, 0], [1, 4], [[1, 2, 3, 4], [5, 0, 0, 5]])
    g = rebin(h, bins=10)
    assert g.edges[0] == -1 and g.edges[-1] == 4
    assert g.counts.sum(axis=1) == pytest.approx([10, 10])
    assert g.counts[0] == pytest.approx([1, 2, 3, 4, 0, 0, 0, 0, 0, 0])
    # second histogram: 5 in [0, 1), 5 in [3, 4): spread evenly over the finer grid bins there
    assert g.counts[1] == pytest.approx([0, 0, 2.5, 2.5, 0, 0, 0, 0, 2.5, 2.5])


def test_rebin_handles_a_constant_tensor_and_thins_columns():
    h = hist([0, 1], [0.5, 0.5], [0.5, 0.5], [[7, 0], [3, 0]])
    g = rebin(h, bins=4)
    assert g.counts.sum(axis=1) == pytest.approx([7, 3])
    assert thin_rows(1000, 100)[-1] == 999 and len(thin_rows(1000, 100)) <= 100
    big = hist(np.arange(1000), np.zeros(1000), np.ones(1000), np.ones((1000, 4)))
    assert len(rebin(big, max_columns=50).steps) <= 50


def test_one_blown_up_step_does_not_squeeze_the_heatmap_and_loses_no_counts():
    n = 100
    lo, hi = np.full(n, -1.0), np.full(n, 1.0)
    lo[50], hi[50] = -1000.0, 1000.0
    g = rebin(hist(np.arange(n), lo, hi, np.ones((n, 10))), bins=20)
    assert (g.edges[0], g.edges[-1]) == pytest.approx((-1, 1))
    assert g.clipped == pytest.approx(0.999 / n, rel=0.01)  # the blown-up step's mass beyond +-1
    assert g.counts.sum(axis=1) == pytest.approx(np.full(n, 10.0))
    assert g.counts[50, 0] == pytest.approx(g.counts[50, -1]) and g.counts[50, 0] > 4.9
    fig = hist_heatmap_figure(g)
    assert "beyond this range" in fig.layout.title.subtitle.text


def test_at_step_picks_the_nearest_recorded_step():
    h = hist([0, 25, 50], [0, 0, 0], [1, 2, 3], [[1, 1], [2, 2], [3, 3]])
    step, edges, counts = at_step(h, 30)
    assert step == 25 and edges[-1] == 2 and list(counts) == [2, 2]


def test_heatmap_has_one_column_per_step_and_log_counts():
    g = rebin(hist([0, 10, 20], [0, 0, 0], [1, 1, 1], [[0, 9], [9, 0], [3, 3]]), bins=2)
    fig = hist_heatmap_figure(g, title="t", value_title="activation")
    hm = fig.data[0]
    assert isinstance(hm, go.Heatmap)
    assert list(hm.x) == [0, 10, 20]
    assert np.asarray(hm.z) == pytest.approx(np.log1p(g.counts.T))
    assert fig.layout.yaxis.title.text == "activation" and fig.layout.xaxis.title.text == "optimizer step"


def test_histogram_at_step_bars_sit_on_the_recorded_bins():
    fig = hist_at_step_figure(np.array([0.0, 1.0, 2.0]), np.array([3.0, 4.0]), step=7, log_counts=True)
    bar = fig.data[0]
    assert list(bar.x) == [0.5, 1.5] and list(bar.width) == [1.0, 1.0]
    assert fig.layout.yaxis.type == "log" and "step 7" in fig.layout.title.text


# -- line charts -----------------------------------------------------------------------------------
def test_crowded_charts_use_webgl_and_one_downsampled_long_curve_stays_svg():
    one = lines_figure([Curve("loss", series(np.random.rand(100_000)))])
    assert [type(t) for t in one.data] == [go.Scatter] and len(one.data[0].x) <= 4000
    crowded = [Curve(f"layer{i}", series(np.random.rand(5000))) for i in range(8)]
    assert all(type(t) is go.Scattergl for t in lines_figure(crowded).data)
    base.set_webgl(False)
    try:
        assert all(type(t) is go.Scatter for t in lines_figure(crowded).data)
    finally:
        base.set_webgl(True)


def test_lines_figure_shares_hover_on_step_and_marks_nonfinite_values():
    s = series([3.0, 2.0, np.nan, np.inf, 1.0])
    fig = lines_figure([Curve("train", s, color="#4e79a7")], title="Loss", y_title="loss", mark_nonfinite=True)
    assert fig.layout.hovermode == "x unified"
    assert fig.layout.xaxis.title.text == "optimizer step" and fig.layout.yaxis.title.text == "loss"
    marks = [t for t in fig.data if "NaN/Inf" in t.name]
    assert len(marks) == 1 and list(marks[0].x) == [2, 3]


def test_smoothing_draws_raw_behind_smoothed_but_not_for_sparse_series():
    long = series(np.random.rand(500))
    fig = lines_figure([Curve("train", long), Curve("val", series([1.0, 0.8, 0.7]))], smoothing=0.6)
    names = [t.name for t in fig.data]
    assert names.count("train (raw)") == 1 and "val (raw)" not in names
    raw = next(t for t in fig.data if t.name == "train (raw)")
    assert raw.opacity < 1 and raw.showlegend is False


def test_empty_input_raises_instead_of_drawing_an_empty_chart():
    with pytest.raises(NoDataError):
        lines_figure([Curve("x", series([]))])
    with pytest.raises(NoDataError):
        layer_grid_figure({"mean": {}}, ["a"])
    with pytest.raises(NoDataError):
        update_ratio_figure({}, ["a"], Thresholds())


def test_constant_series_gets_a_sensible_range():
    fig = lines_figure([Curve("lr", series(np.full(10, 0.05)))])
    assert tuple(fig.layout.yaxis.range) == pytest.approx((0, 0.1))


def test_highlighted_finding_steps_are_shaded():
    fig = lines_figure([Curve("train", series(np.arange(100.0)))], highlight=(10, 40))
    rect = [s for s in fig.layout.shapes if s.type == "rect"]
    assert rect and (rect[0].x0, rect[0].x1) == (10, 40)


# -- per-layer charts ------------------------------------------------------------------------------
def test_layer_grid_has_a_row_per_statistic_and_one_legend_entry_per_layer():
    stats = {"mean": {"a": series([0.1, 0.2]), "b": series([0.3, 0.4])},
             "frac_dead": {"a": series([0.0, 0.5]), "b": series([0.1, 0.9])}}
    fig = layer_grid_figure(stats, ["a", "b"])
    assert len(fig.data) == 4
    assert [t.name for t in fig.data if t.showlegend] == ["a", "b"]
    assert tuple(fig.layout.yaxis2.range) == (-0.02, 1.02)  # fractions on a fixed 0..1 axis
    assert (fig.layout.yaxis.title.text, fig.layout.yaxis2.title.text) == ("mean", "dead units (fraction)")
    assert fig.layout.xaxis2.title.text == "optimizer step"
    colors = {t.name: t.line.color for t in fig.data}
    assert colors["a"] != colors["b"]


def shapes_named(fig) -> dict:
    return {sh.name: sh for sh in fig.layout.shapes if sh.name}


def test_ratio_figure_draws_its_threshold_lines_on_a_log_axis():
    fig = ratio_figure(series([1e-4, 1e-2, 1.0]), levels=[Level(70.0, "exploding above 70", "explode_ratio")])
    assert fig.layout.yaxis.type == "log"
    assert shapes_named(fig)["explode_ratio"].y0 == 70
    # labels sit at the thresholds (annotations on a log axis use log10 coordinates)
    assert [a.y for a in fig.layout.annotations] == pytest.approx([np.log10(70)])


def test_log_axis_marks_exact_zeros_and_keeps_a_readable_range():
    # a gradient that dies: 1, then numerical dust down to 1e-20, then exactly 0
    s = series([1.0, 0.5, 1e-3, 1e-12, 1e-20, 0.0, 0.0, 0.0])
    fig = log_layers_figure({"w": s}, ["w"], y_title="norm", labels={"w": "w (Linear)"}, max_decades=8)
    lo, hi = fig.layout.yaxis.range
    assert hi - lo < 8.5 and lo > -9  # never stretched to 1e-20
    assert fig.layout.yaxis.dtick in (1, 2)  # at most ~8 labels
    line = fig.data[0]
    assert line.name == "w (Linear)"
    y = np.asarray(line.y, dtype=float)
    assert np.isnan(y[3:]).all() and y[2] == pytest.approx(1e-3)
    zeros = next(t for t in fig.data if t.mode == "markers" and "= 0" in t.name)
    assert list(zeros.x) == [5, 6, 7] and np.allclose(zeros.y, 10.0 ** lo)  # on the bottom edge
    below = next(t for t in fig.data if t.mode == "markers" and "below" in t.name)
    assert list(below.x) == [3, 4] and list(below.customdata) == pytest.approx([1e-12, 1e-20])
    assert any(t.name == "exactly 0 (bottom edge)" for t in fig.data)  # the legend says what × means


def test_log_ticks_stay_few_over_many_decades():
    fig = lines_figure([Curve("g", series(np.logspace(-20, 2, 50)))], log_y=True)
    lo, hi = fig.layout.yaxis.range
    assert (hi - lo) / fig.layout.yaxis.dtick <= 8
    # over a decade or two: 1-2-5 steps written out in full (0.5, not a small "5" under the "1")
    loss = lines_figure([Curve("loss", series(np.linspace(0.3, 8.0, 50)))], log_y=True)
    assert list(loss.layout.yaxis.ticktext) == ["0.5", "1", "2", "5"]
    assert list(loss.layout.yaxis.tickvals) == pytest.approx([0.5, 1, 2, 5])


def test_update_ratio_figure_draws_the_verdict_zones_guides_and_statistic():
    th = Thresholds()
    s = {"w": series([2e-2, 1e-2, 5e-3, 0.0]), "v": series([0.2, 0.3, 0.2, 0.1])}
    seg = Segment("w", 0.018, (0, 1), "0.018 over steps 0–1 → in range")
    fig = update_ratio_figure(s, ["w", "v"], th, segments=[seg])
    named = shapes_named(fig)
    assert named["update_ratio_low"].y0 == th.update_ratio_low
    assert named["update_ratio_high"].y0 == th.update_ratio_high
    assert named["update_ratio_large"].y0 == th.update_ratio_large
    assert named["update_ratio_guide_cs231n"].y0 == th.update_ratio_guide_cs231n
    assert named["update_ratio_guide_notes"].y0 == th.update_ratio_guide_notes
    assert (named["in range"].y0, named["in range"].y1) == (th.update_ratio_low, th.update_ratio_large)
    assert (named["large"].y0, named["large"].y1) == (th.update_ratio_large, th.update_ratio_high)
    assert fig.layout.yaxis.type == "log"
    seg_trace = next(t for t in fig.data if t.name.startswith("w: 0.018"))
    assert list(seg_trace.y) == [0.018, 0.018] and list(seg_trace.x) == [0, 1]
    without = shapes_named(update_ratio_figure(s, ["w"], th, guides=False))
    assert "update_ratio_guide_cs231n" not in without and "update_ratio_low" in without


def test_grad_flow_figure_draws_the_vanishing_lines_and_no_gradient_spans():
    th = Thresholds()
    rel = pd.DataFrame({"a": [1e-5, 1e-5, 0.0], "b": [1.0, 1.0, 1.0]}, index=pd.Index([0, 10, 20], name="step"))
    fig = grad_flow_figure(rel, ["a", "b"], th, spans=[(20, 20, "no gradient from step 20")])
    named = shapes_named(fig)
    assert named["vanish_ratio"].y0 == th.vanish_ratio
    assert any(a.text == "no gradient from step 20" for a in fig.layout.annotations)


def test_symlog_keeps_an_exploding_layer_from_flattening_the_others():
    calm = [series(np.full(20, 0.5) + 0.05 * np.sin(np.arange(20))) for _ in range(4)]
    wild = series(np.linspace(0.5, 5e4, 20))
    assert symlog_scale(calm) is None  # similar layers: a linear axis shows them all
    c = symlog_scale(calm + [wild])
    assert c is not None
    span = symlog(5e4, c) - symlog(0.0, c)
    assert (symlog(0.55, c) - symlog(0.45, c)) / span > 0.01  # a 0.1 wiggle stays visible
    assert symlog(0.0, c) == 0 and symlog(-1.0, c) == -symlog(1.0, c)
    names = [f"l{i}" for i in range(5)]
    fig = layer_grid_figure({"mean": dict(zip(names, calm + [wild]))}, names)
    assert "symlog" in fig.layout.yaxis.title.text and fig.layout.yaxis.ticktext
    assert fig.data[-1].customdata is not None  # hover shows the real value
    calm_fig = layer_grid_figure({"mean": dict(zip(names, calm)), "std": dict(zip(names, calm))}, names[:4])
    assert calm_fig.layout.yaxis.title.text == "mean"  # similar layers keep a linear mean axis
    assert "symlog" in calm_fig.layout.yaxis2.title.text  # the spread is always read in decades


# -- calibration -----------------------------------------------------------------------------------
TABLE = {"bin_lo": [0.0, 0.5], "bin_hi": [0.5, 1.0], "count": [10, 30], "confidence": [0.3, 0.9],
         "accuracy": [0.2, 0.6]}


def test_ece_is_the_count_weighted_gap():
    df = table_frame(TABLE)
    assert expected_calibration_error(df) == pytest.approx(10 / 40 * 0.1 + 30 / 40 * 0.3)
    assert table_ece({**TABLE, "ece": 0.5}, df) == 0.5  # the recorded value wins when present
    assert np.isnan(expected_calibration_error(table_frame({**TABLE, "count": [0, 0]})))


def test_bad_calibration_tables_get_a_clear_error():
    with pytest.raises(CalibrationTableError, match="accuracy"):
        table_frame({k: v for k, v in TABLE.items() if k != "accuracy"})
    with pytest.raises(CalibrationTableError):
        table_frame({**TABLE, "count": [1, 2, 3]})


def test_reliability_diagram_has_bars_diagonal_and_counts():
    df = table_frame(TABLE)
    fig = reliability_figure(df, ece=0.25)
    names = [t.name for t in fig.data]
    assert names == ["accuracy", "gap to confidence", "perfect calibration", "samples"]
    acc = fig.data[0]
    assert list(acc.x) == [0.25, 0.75] and list(acc.y) == [0.2, 0.6]
    gap = fig.data[1]
    assert list(gap.base) == [0.2, 0.6] and list(gap.y) == pytest.approx([0.1, 0.3])
    assert "ECE 0.250" in fig.layout.title.text
    with pytest.raises(NoDataError):
        reliability_figure(table_frame({**TABLE, "count": [0, 0]}), ece=0.0)
