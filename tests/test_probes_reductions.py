"""The two implementations of every statistic agree: the torch one of each family (sync-free, used on
GPUs) and the numpy one (used on the CPU). Both run on the CPU here, so the GPU path is checked on
every machine, GPU or not. Statistics are compared by name (runstore.tags descriptors)."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from probes import activations as A
from probes import histograms as H
from probes import logits as L
from probes import parameters as P
from probes.arrays import as_numpy
from runstore import tags


def _close(a, b, rel=1e-5):
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def _both_histograms(xs, bins):
    dev = H.batched_torch([H.sample_torch(x, 10**6) for x in xs], bins)
    with np.errstate(all="ignore"):  # as in the recorder: NaN/Inf are counted, not warned about
        cpu = H.BatchedNumpy(bins)([H.sample_numpy(as_numpy(x), 10**6) for x in xs])
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
        counts, lo, hi = H.BatchedNumpy(4)([as_numpy(x).copy(), np.arange(8, dtype=np.float32)])
    assert counts[0].tolist() == [1, 0, 1, 1] and lo[0] == pytest.approx(-3e38) and hi[0] == pytest.approx(3e38)
    assert counts[1].tolist() == [2, 2, 2, 2]


@pytest.mark.parametrize("n", [4097, 6000, 100_000, 1_000_003])
def test_large_tensors_are_histogrammed_from_a_sample_spread_over_the_whole_tensor(n):
    x = torch.arange(n, dtype=torch.float32)
    s = H.sample_torch(x, 4096)
    assert 4096 // 2 < s.numel() <= 4096
    runs = s.reshape(-1, H.SAMPLE_RUN)
    assert (runs[:, 1:] - runs[:, :-1] == 1).all()  # runs of consecutive elements...
    gaps = runs[1:, 0] - runs[:-1, 0]
    assert (gaps == gaps[0]).all()  # ...evenly spaced...
    assert s[0] == 0 and s[-1] >= n - 2 * gaps[0]  # ...from the start to (nearly) the end
    c = H.sample_numpy(as_numpy(x), 4096)
    assert np.array_equal(c, s.numpy())  # the same elements on the CPU
    x[0] = 7.0
    assert s[0] == 0.0 and c[0] == 0.0  # copies: later in-place changes do not reach them
    small = torch.arange(100, dtype=torch.float32)
    assert H.sample_torch(small, 4096).tolist() == H.sample_numpy(as_numpy(small), 4096).tolist() == small.tolist()


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
    # A Linear output too large for the matrix-vector path (activations.GEMV_MAX) is summed another way.
    big = torch.zeros(300, 400)
    big[:, :100] = 1.0
    big[0, 150], big[1, 150] = 2.0, -2.0
    assert big.numel() > A.GEMV_MAX
    cases.append((nn.Linear(1, 400), big, 299 / 400))
    for module, x, dead in cases:
        assert A.stats_numpy(module, as_numpy(x)).frac_dead == pytest.approx(dead)
        assert A.stats_torch(module, x)[tags.ACT_STATS.index("frac_dead")].item() == pytest.approx(dead)


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
            cpu = A.stats_numpy(module, as_numpy(x))
        dev = dict(zip(tags.ACT_STATS, A.stats_torch(module, x).tolist()))
        assert dev.keys() == cpu._asdict().keys()
        assert all(_close(getattr(cpu, s), dev[s]) for s in tags.ACT_STATS), (module, cpu, dev)
        if x.isfinite().all():
            assert cpu.std == pytest.approx(x.double().std().item(), rel=1e-5)


def test_parameter_and_update_stats_agree():
    torch.manual_seed(0)
    ts = [torch.randn(256, 64), torch.zeros(10), torch.randn(7) * 1e20, torch.randn(5)]
    ts[3][1] = float("nan")
    with np.errstate(all="ignore"):
        cpu = P.grad_stats_numpy([as_numpy(t).reshape(-1) for t in ts])
    dev = P.grad_stats_torch(ts).reshape(len(tags.GRAD_STATS), len(ts))  # stat by stat
    for stat, row in zip(tags.GRAD_STATS, dev.tolist()):
        assert all(_close(a, b) for a, b in zip(getattr(cpu, stat), row)), (stat, cpu, row)
    assert cpu.norm[2] == pytest.approx(ts[2].double().norm().item(), rel=1e-5)  # no float32 overflow
    assert cpu.nonfinite == [0, 0, 0, 1] and math.isnan(cpu.abs_mean[3])
    old = [torch.randn(100), torch.zeros(3)]
    new = [o + 0.01 * torch.randn_like(o) for o in old]
    ratios, weights = P.update_stats_numpy([as_numpy(o).copy() for o in old], [as_numpy(n) for n in new])
    assert ratios[0] == pytest.approx(((new[0] - old[0]).norm() / old[0].norm()).item(), rel=1e-5)
    assert math.isnan(ratios[1])  # undefined for a parameter that was exactly zero
    assert weights.norm == pytest.approx([n.norm().item() for n in new], rel=1e-6)
    dratios, dweights = P.update_stats_torch([o.clone() for o in old], new)
    assert all(_close(a, b) for a, b in zip(ratios, dratios.tolist()))
    assert all(_close(a, b) for a, b in zip([v for col in weights for v in col], dweights.tolist()))


def test_binary_logit_stats_agree_and_match_the_sigmoid():
    """Binary logits (B,) or (B, 1) are the two classes (0, z): both implementations give the
    sigmoid's confidence max(p, 1 - p), its entropy, the accuracy of z > 0 and BCEWithLogitsLoss."""
    torch.manual_seed(0)
    z = torch.randn(64) * 3
    labels = torch.randint(0, 2, (64,))
    p = torch.sigmoid(z.double())
    want = {"confidence": torch.maximum(p, 1 - p).mean().item(),
            "entropy": (-(p * p.log() + (1 - p) * (1 - p).log())).mean().item(),
            "accuracy": ((z > 0).long() == labels).double().mean().item()}
    for logits, t in ((z, labels), (z[:, None], labels[:, None]), (z, labels.float() * 0.9 + 0.05)):
        want["cross_entropy"] = torch.nn.functional.binary_cross_entropy_with_logits(
            z.double(), t.reshape(-1).double()).item()  # BCEWithLogitsLoss, soft labels included
        with np.errstate(all="ignore"):
            _, cvec, _, _ = L.stats_numpy(logits, t)
        _, dvec, _, _ = L.stats_torch(logits, t)
        dvec = dict(zip(tags.LOGIT_STATS, dvec.tolist()))
        for s in tags.LOGIT_STATS:
            assert getattr(cvec, s) == pytest.approx(want[s], rel=1e-5), s
            assert dvec[s] == pytest.approx(want[s], rel=1e-5), s
    assert L.n_classes(z) == L.n_classes(z[:, None]) == 2


def test_logit_stats_agree():
    torch.manual_seed(0)
    logits = torch.randn(64, 5) * 3
    logits[0, 2] = float("-inf")  # a masked class
    targets = torch.randint(0, 5, (64,))
    targets[:4] = -100  # ignore_index
    for t in (targets, None, torch.nn.functional.one_hot(targets.clamp_min(0), 5).float()):
        with np.errstate(all="ignore"):
            cconf, cvec, ccorrect, _ = L.stats_numpy(logits, t)
        dconf, dvec, dcorrect, dvalid = L.stats_torch(logits, t)
        if dvalid is not None:  # the torch side marks the ignored positions; numpy drops them
            dconf, dcorrect = dconf[dvalid], dcorrect[dvalid]
        assert np.allclose(cconf, dconf.numpy(), rtol=1e-6)
        dvec = dict(zip(tags.LOGIT_STATS, dvec.tolist()))
        assert all(_close(getattr(cvec, s), dvec[s]) for s in tags.LOGIT_STATS), (cvec, dvec)
        assert math.isnan(cvec.accuracy) == (t is None)
        assert (ccorrect is None) == (dcorrect is None)
        if ccorrect is not None:
            assert np.array_equal(ccorrect, dcorrect.numpy())
    with np.errstate(all="ignore"):
        conf, _, correct, _ = L.stats_numpy(logits, targets)
    assert np.array_equal(H.fixed_numpy(conf, 10, 0.0, 1.0),
                          H.fixed_torch(torch.from_numpy(conf), 10, 0.0, 1.0).numpy())
    assert np.allclose(L.calibration_sums_numpy(conf, correct, 15),
                       L.calibration_sums_torch(torch.from_numpy(conf), torch.from_numpy(correct), 15).numpy())
