"""The sync-free (GPU) reduction paths give the same numbers as the CPU paths; tested on the CPU so
they are checked on every machine, GPU or not."""

import torch

from probes import reductions as R


def test_sync_free_histograms_equal_cpu_histograms():
    torch.manual_seed(0)
    xs = [torch.randn(1000), torch.rand(37) * 5, torch.full((10,), 2.0), torch.randn(500)]
    xs[3][:7] = float("nan")
    xs[3][7:9] = float("inf")
    ranges = [R._finite_range(x) for x in xs]
    ranges_sf = [R._finite_range(x, sync_free=True) for x in xs]
    for (a, b), (c, d) in zip(ranges, ranges_sf):
        assert a == c and b == d
    lo = torch.stack([r[0] for r in ranges])
    hi = torch.stack([r[1] for r in ranges])
    # The recorder hands samples through hist_sample, which drops non-finite values on the CPU;
    # the sync-free path gets them raw and must leave them out itself.
    picked = [R.hist_sample(x, 10**6)[0] for x in xs]
    cpu = R.batched_histograms(picked, lo, hi, 12)
    sf = R.batched_histograms(xs, lo, hi, 12, sync_free=True)
    assert torch.equal(cpu, sf)
    assert cpu[0].sum() == 1000 and cpu[3].sum() == 491  # non-finite values are left out
    finite = xs[3][torch.isfinite(xs[3])]
    assert torch.equal(cpu[3], torch.histc(finite, 12, finite.min().item(), finite.max().item()))
    assert cpu[2][0] == 10  # a constant tensor lands in one bin


def test_unit_axis_for_linear_conv_and_sequence_outputs():
    import torch.nn as nn
    x = torch.zeros(4, 3, 5, 5)
    x[:, 0] = 1.0  # channel 0 alive, channels 1 and 2 dead
    assert abs(R.activation_stats(nn.ReLU(), x)[3].item() - 2 / 3) < 1e-6
    seq = torch.zeros(4, 7, 6)
    seq[..., :3] = 1.0  # (N, T, F): half the features are dead
    assert R.activation_stats(nn.ReLU(), seq)[3].item() == 0.5
    conv1d = torch.zeros(4, 6, 7)
    conv1d[:, :2] = 1.0  # (N, C, L) from a Conv1d: 4 of 6 channels dead
    assert abs(R.activation_stats(nn.Conv1d(1, 6, 1), conv1d)[3].item() - 4 / 6) < 1e-6
