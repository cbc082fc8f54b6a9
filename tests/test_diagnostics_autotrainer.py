"""AUTOTRAINER's published symptom rules (diagnostics.autotrainer) on synthetic runs with one
symptom each, with the paper's default parameters."""

from __future__ import annotations

import numpy as np
import pytest

import diagnostics
from diagnostics import autotrainer
from diagnostics.autotrainer import AutoTrainerParams, _oscillating, _zero_grad_fraction
from diagnostics.thresholds import Thresholds
from diagnostics.view import RunView
from test_diagnostics_synth import healthy, layer_steps, write_run


def detect(tmp_path, spec, params=None):
    return autotrainer.detect(diagnostics.load_run(write_run(tmp_path / "r", spec)), params)


def stuck(spec, acc=0.3):
    """Accuracy that never reaches AUTOTRAINER's target (0.7) and barely moves."""
    ev = spec["scalars"]["val/loss"][0]
    ls = layer_steps(spec["n"], spec["every"])
    spec["scalars"]["val/accuracy"] = (ev, acc + 0.001 * np.arange(len(ev)))
    spec["scalars"]["train/accuracy"] = (ls, np.full(len(ls), acc))
    return spec


def test_healthy_run_has_no_problem(tmp_path):
    assert detect(tmp_path, healthy()).problems == []


def test_vanishing_gradient(tmp_path):
    spec = stuck(healthy())
    spec["grad"]["net.0.weight"]["norm"] = np.full(len(spec["grad"]["net.0.weight"]["norm"]), 1e-6)
    spec["grad"]["net.4.weight"]["norm"] = np.full(len(spec["grad"]["net.4.weight"]["norm"]), 1e-2)
    rep = detect(tmp_path, spec)
    assert rep.problems == ["vanishing_gradient"] and rep.detects("vanishing_gradients")


def test_exploding_gradient_ratio(tmp_path):
    spec = stuck(healthy())
    spec["grad"]["net.0.weight"]["norm"] = np.full(len(spec["grad"]["net.0.weight"]["norm"]), 100.0)
    spec["grad"]["net.4.weight"]["norm"] = np.full(len(spec["grad"]["net.4.weight"]["norm"]), 1.0)
    assert detect(tmp_path, spec).problems == ["exploding_gradient"]


def test_nan_loss_counts_as_exploding(tmp_path):
    spec = healthy()
    spec["loss"][400:] = np.nan
    rep = detect(tmp_path, spec)
    assert "exploding_gradient" in rep.problems and rep.detects("nan_loss")


def test_dying_relu_from_dead_units(tmp_path):
    spec = stuck(healthy())
    m = len(layer_steps(spec["n"], spec["every"]))
    for r in ("net.1", "net.3"):
        spec["act"][r]["frac_dead"] = np.full(m, 0.9)
    assert detect(tmp_path, spec).problems == ["dying_relu"]


def test_zero_gradient_fraction_estimate(tmp_path):
    spec = healthy()
    m = len(layer_steps(spec["n"], spec["every"]))
    spec["act"]["net.1"]["frac_dead"] = np.full(m, 0.5)
    spec["act"]["net.3"]["frac_dead"] = np.zeros(m)
    v = RunView(diagnostics.load_run(write_run(tmp_path / "r", spec)), Thresholds())
    # net.0 (64x128+128 params): outputs half dead -> 0.5; net.2 (128x128+128): inputs half dead -> 0.5;
    # net.4 (128x10+10): its inputs are alive -> 0.
    sizes = (64 * 128 + 128, 128 * 128 + 128, 128 * 10 + 10)
    expected = (0.5 * sizes[0] + 0.5 * sizes[1]) / sum(sizes)
    assert _zero_grad_fraction(v, 301) == pytest.approx(expected)


def test_oscillating_loss_when_converged(tmp_path):
    spec = healthy()
    ls = layer_steps(spec["n"], spec["every"])
    ev = spec["scalars"]["val/loss"][0]
    spec["scalars"]["val/accuracy"] = (ev, np.tile([0.85, 0.75], len(ev) // 2))
    # train accuracy per epoch alternates 0.9 / 0.8: every interior point is a peak or a valley
    epoch_of = np.searchsorted(ev, ls)
    spec["scalars"]["train/accuracy"] = (ls, np.where(epoch_of % 2 == 0, 0.9, 0.8))
    assert detect(tmp_path, spec).problems == ["oscillating_loss"]
    assert _oscillating([0.9, 0.8, 0.9, 0.8, 0.9], 0.03, 0.2)
    assert not _oscillating([0.5, 0.6, 0.7, 0.8, 0.9], 0.03, 0.2)


def test_slow_convergence(tmp_path):
    spec = stuck(healthy(), acc=0.5)
    rep = detect(tmp_path, spec)
    assert rep.problems == ["slow_convergence"] and rep.detects("loss_plateau")


def test_parameters_can_be_changed(tmp_path):
    spec = stuck(healthy(), acc=0.5)
    assert detect(tmp_path, spec, AutoTrainerParams(delta=0.0)).problems == []
