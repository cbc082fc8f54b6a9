"""The two implementations of every statistic agree: reductions.py (sync-free, used on GPUs) and
cpu_stats.py (numpy, used on the CPU). Both run on the CPU here, so the GPU path is checked on
every machine, GPU or not."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from probes import cpu_stats as C
from probes import reductions as R


def _close(a, b, rel=1e-5):
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def _both_histograms(xs, bins):
    dev = R.batched_histograms([R.hist_sample(x, 10**6) for x in xs], bins)
    with np.errstate(all="ignore"):  # as in the recorder: NaN/Inf are counted, not warned about
        cpu = C.HistogramBinner(bins)([C.hist_sample(C.as_numpy(x), 10**6) for x in xs])
    return [t.numpy() for t in dev], cpu


def test_cpu_and_device_histograms_are_identical():
    torch.manual_seed(0)
    xs = [torch.randn(1000), torch.rand(37) * 5, torch.full((10,), 2.0), torch.randn(500)]
    xs[3][:7] = float("nan")
    xs[3][7:9] = float("inf")
    (dc, dlo, dhi), (cc, clo, chi) = _both_histograms(xs, 12)
    assert np.array_equal(dc, cc) and np.array_equal(dlo, clo) and np.array_equal(dhi, chi)
    assert cc[0].sum() == 1000 and cc[3].sum() == 491  # non-finite values are left out
    finite = xs[3][torch.isfinite(xs[3])]
    assert clo[3] == finite.min() and chi[3] == finite.max()
    assert np.array_equal(cc[3], torch.histc(finite, 12, finite.min().item(), finite.max().item()).numpy())
    assert cc[2][0] == 10 and clo[2] == chi[2] == 2.0  # a constant tensor lands in one bin
    # Many tensors of different scales in one batch, the maximum of each in its last bin.
    xs = [torch.randn(3000) * 10.0 ** k for k in range(-3, 4)] + [torch.arange(40.0)]
    (dc, dlo, dhi), (cc, clo, chi) = _both_histograms(xs, 40)
    assert np.array_equal(dc, cc) and np.array_equal(dlo, clo)
    assert (cc[:-1, -1] >= 1).all() and (cc[-1] == 1).all()  # 0..39 in 40 bins: one per bin


def test_histogram_of_values_near_float32_limits():
    x = torch.tensor([-3e38, 1e38, 3e38, float("nan")])
    with np.errstate(all="ignore"):
        counts, lo, hi = C.HistogramBinner(4)([C.as_numpy(x).copy(), np.arange(8, dtype=np.float32)])
    assert counts[0].tolist() == [1, 0, 1, 1] and lo[0] == pytest.approx(-3e38) and hi[0] == pytest.approx(3e38)
    assert counts[1].tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("n", [4097, 6000, 100_000, 1_000_003])
def test_large_tensors_are_histogrammed_from_a_sample_spread_over_the_whole_tensor(n):
    x = torch.arange(n, dtype=torch.float32)
    s = R.hist_sample(x, 4096)
    assert 4096 // 2 < s.numel() <= 4096
    runs = s.reshape(-1, R.SAMPLE_RUN)
    assert (runs[:, 1:] - runs[:, :-1] == 1).all()  # runs of consecutive elements...
    gaps = runs[1:, 0] - runs[:-1, 0]
    assert (gaps == gaps[0]).all()  # ...evenly spaced...
    assert s[0] == 0 and s[-1] >= n - 2 * gaps[0]  # ...from the start to (nearly) the end
    c = C.hist_sample(C.as_numpy(x), 4096)
    assert np.array_equal(c, s.numpy())  # the same elements on the CPU
    x[0] = 7.0
    assert s[0] == 0.0 and c[0] == 0.0  # copies: later in-place changes do not reach them
    small = torch.arange(100, dtype=torch.float32)
    assert R.hist_sample(small, 4096).tolist() == C.hist_sample(C.as_numpy(small), 4096).tolist() == small.tolist()


def test_unit_axis_for_linear_conv_and_sequence_outputs():
    cases = []
    x = torch.zeros(4, 3, 5, 5)
    x[:, 0] = 1.0  # channel 0 alive, channels 1 and 2 dead
    cases.append((nn.ReLU(), x, 2 / 3))
    seq = torch.zeros(4, 7, 6)
    seq[..., :3] = 1.0  # (N, T, F): half the features are dead
    cases.append((nn.ReLU(), seq, 0.5))
    conv1d = torch.zeros(4, 6, 7)
    conv1d[:, :2] = 1.0  # (N, C, L) from a Conv1d: 4 of 6 channels dead
    cases.append((nn.Conv1d(1, 6, 1), conv1d, 4 / 6))
    # Units whose values cancel (sum exactly zero) are alive, not dead.
    cancel = torch.zeros(4, 5)
    cancel[0, 1], cancel[1, 1] = 3.0, -3.0
    cancel[2, 2] = float("nan")
    cases.append((nn.Linear(1, 5), cancel, 3 / 5))
    cancel4d = torch.zeros(2, 3, 2, 2)
    cancel4d[0, 0, 0, 0], cancel4d[1, 0, 1, 1] = -0.5, 0.5
    cases.append((nn.Conv2d(1, 3, 1), cancel4d, 2 / 3))
    # A Linear output too large for the matrix-vector path (cpu_stats.GEMV_MAX) is summed another way.
    big = torch.zeros(300, 400)
    big[:, :100] = 1.0
    big[0, 150], big[1, 150] = 2.0, -2.0
    assert big.numel() > C.GEMV_MAX
    cases.append((nn.Linear(1, 400), big, 299 / 400))
    for module, x, dead in cases:
        assert C.activation_stats(module, C.as_numpy(x))[3] == pytest.approx(dead)
        assert R.activation_stats(module, x)[3].item() == pytest.approx(dead)


def test_activation_stats_agree():
    torch.manual_seed(0)
    cases = [(nn.ReLU(), torch.randn(32, 16).relu()),
             (nn.Sigmoid(), torch.randn(8, 4, 5, 5).mul(9).sigmoid()),
             (nn.Sigmoid(), torch.randn(64, 32).mul(0.01).sigmoid()),  # mean >> spread: two-pass variance
             (nn.Linear(3, 3), torch.randn(256, 300) + 1000.0),
             (nn.Tanh(), torch.randn(16, 8).tanh().double()),  # float64 outputs are reduced in float32
             (nn.Linear(3, 3), torch.tensor([[1.0, float("nan")], [float("inf"), 0.0]]))]
    for module, x in cases:
        with np.errstate(all="ignore"):
            cpu = C.activation_stats(module, C.as_numpy(x))
        dev = R.activation_stats(module, x).tolist()
        assert all(_close(a, b) for a, b in zip(cpu, dev)), (module, cpu, dev)
        if x.isfinite().all():
            assert cpu[1] == pytest.approx(x.double().std().item(), rel=1e-5)


def test_parameter_and_update_stats_agree():
    torch.manual_seed(0)
    ts = [torch.randn(256, 64), torch.zeros(10), torch.randn(7) * 1e20, torch.randn(5)]
    ts[3][1] = float("nan")
    with np.errstate(all="ignore"):
        cpu = C.param_stats([C.as_numpy(t).reshape(-1) for t in ts])
    dev = R.param_stats(ts).reshape(-1).tolist()
    assert all(_close(a, b) for a, b in zip(cpu, dev)), (cpu, dev)
    assert cpu[6] == pytest.approx(ts[2].double().norm().item(), rel=1e-5)  # no float32 overflow
    old = [torch.randn(100), torch.zeros(3)]
    new = [o + 0.01 * torch.randn_like(o) for o in old]
    ratios, norms = C.update_stats([C.as_numpy(o).copy() for o in old], [C.as_numpy(n) for n in new])
    assert ratios[0] == pytest.approx(((new[0] - old[0]).norm() / old[0].norm()).item(), rel=1e-5)
    assert math.isnan(ratios[1])  # undefined for a parameter that was exactly zero
    assert norms == pytest.approx([n.norm().item() for n in new], rel=1e-6)


def test_logit_stats_agree():
    torch.manual_seed(0)
    logits = torch.randn(64, 5) * 3
    logits[0, 2] = float("-inf")  # a masked class
    targets = torch.randint(0, 5, (64,))
    targets[:4] = -100  # ignore_index
    for t in (targets, None, torch.nn.functional.one_hot(targets.clamp_min(0), 5).float()):
        with np.errstate(all="ignore"):
            cconf, cvec, ccorrect = C.logits_stats(logits, t)
        dconf, dvec, dcorrect = R.logits_stats(logits, t)
        assert np.allclose(cconf, dconf.numpy(), rtol=1e-6)
        assert all(_close(a, b) for a, b in zip(cvec, dvec.tolist())), (cvec, dvec)
        assert (ccorrect is None) == (dcorrect is None)
        if ccorrect is not None:
            assert np.array_equal(ccorrect, dcorrect.numpy())
    with np.errstate(all="ignore"):
        conf, _, correct = C.logits_stats(logits, targets)
    assert np.array_equal(C.fixed_histogram(conf, 10, 0.0, 1.0),
                          R.fixed_histogram(torch.from_numpy(conf), 10, 0.0, 1.0).numpy())
    assert np.allclose(C.calibration_sums(conf, correct, 15),
                       R.calibration_sums(torch.from_numpy(conf), torch.from_numpy(correct), 15).numpy())
