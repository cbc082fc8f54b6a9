"""The sync-free (GPU) reduction paths give the same numbers as the CPU paths; tested on the CPU so
they are checked on every machine, GPU or not."""

import torch

from probes import reductions as R


def test_sync_free_histograms_equal_cpu_histograms():
    torch.manual_seed(0)
    xs = [torch.randn(1000), torch.rand(37) * 5, torch.full((10,), 2.0), torch.randn(500)]
    xs[3][:7] = float("nan")
    xs[3][7:9] = float("inf")
    cpu, lo, hi = R.batched_histograms([R.hist_sample(x, 10**6) for x in xs], 12)
    sf, lo2, hi2 = R.batched_histograms([R.hist_sample(x, 10**6) for x in xs], 12, sync_free=True)
    assert torch.equal(cpu, sf) and torch.equal(lo, lo2) and torch.equal(hi, hi2)
    assert cpu[0].sum() == 1000 and cpu[3].sum() == 491  # non-finite values are left out
    finite = xs[3][torch.isfinite(xs[3])]
    assert lo[3] == finite.min() and hi[3] == finite.max()
    assert torch.equal(cpu[3], torch.histc(finite, 12, finite.min().item(), finite.max().item()))
    assert cpu[2][0] == 10 and lo[2] == hi[2] == 2.0  # a constant tensor lands in one bin


def test_large_tensors_are_histogrammed_from_a_strided_sample():
    x = torch.arange(100_000, dtype=torch.float32)
    s = R.hist_sample(x, 4096)
    assert 4096 // 2 < s.numel() <= 4096 and s[1] - s[0] == 25  # every 25th element
    x[0] = 7.0
    assert s[0] == 0.0  # a copy: later in-place changes do not reach it


def test_unit_axis_for_linear_conv_and_sequence_outputs():
    import torch.nn as nn
    x = torch.zeros(4, 3, 5, 5)
    x[:, 0] = 1.0  # channel 0 alive, channels 1 and 2 dead
    assert abs(R.activation_stats(nn.ReLU(), x)[3] - 2 / 3) < 1e-6
    seq = torch.zeros(4, 7, 6)
    seq[..., :3] = 1.0  # (N, T, F): half the features are dead
    assert R.activation_stats(nn.ReLU(), seq)[3] == 0.5
    conv1d = torch.zeros(4, 6, 7)
    conv1d[:, :2] = 1.0  # (N, C, L) from a Conv1d: 4 of 6 channels dead
    assert abs(R.activation_stats(nn.Conv1d(1, 6, 1), conv1d)[3] - 4 / 6) < 1e-6


def test_sync_free_activation_stats_equal_cpu_stats():
    import math
    import torch.nn as nn
    torch.manual_seed(0)
    cases = [(nn.ReLU(), torch.randn(32, 16).relu()), (nn.Sigmoid(), torch.randn(8, 4, 5, 5).mul(9).sigmoid()),
             (nn.Linear(3, 3), torch.tensor([[1.0, float("nan")], [float("inf"), 0.0]]))]
    for module, x in cases:
        cpu = R.activation_stats(module, x)
        dev = R.activation_stats(module, x, sync_free=True).tolist()
        for a, b in zip(cpu, dev):
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-5 * max(1.0, abs(a)), (module, cpu, dev)
