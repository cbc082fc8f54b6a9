"""Every recorded statistic equals a direct computation in plain torch on the same tensors."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
import runstore
from runstore import tags


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(16, 16)
        self.sig = nn.Sigmoid()
        self.fc3 = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc3(self.sig(self.fc2(self.act1(self.fc1(x)))))


def _train_with_reference(tmp_path, steps=3, **opts):
    """Train with probes on every step while independent hooks keep copies of the same tensors."""
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        model.fc1.bias[:4] = -50.0  # four dead units in act1
        model.fc2.weight.mul_(40)   # push the sigmoid into saturation
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref = {"act": [], "grad": [], "before": [], "after": [], "logits": []}

    def keep(name):
        def hook(module, args, out):
            if torch.is_grad_enabled():  # not the evaluation pass
                ref["act"][-1][name] = out.detach().clone()
        return hook
    hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_children()]
    rec = probes.attach(model, opt, run_dir=tmp_path / "run", every=1, **opts)
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    for _ in range(steps):
        ref["act"].append({})
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        ref["grad"].append({n: p.grad.clone() for n, p in model.named_parameters()})
        ref["before"].append({n: p.detach().clone() for n, p in model.named_parameters()})
        opt.step()
        ref["after"].append({n: p.detach().clone() for n, p in model.named_parameters()})
        ref["logits"].append((logits.detach().clone(), loss.item()))
        rec.record_step(loss, logits=logits, targets=y)
    with torch.no_grad():
        vlogits = model(x)
    rec.record_eval(loss=F.cross_entropy(vlogits, y), logits=vlogits, targets=y)
    rec.close()
    for h in hooks:
        h.remove()
    return runstore.load_run(tmp_path / "run"), ref, (vlogits, y)


def test_activation_stats_match_torch(tmp_path):
    run, ref, _ = _train_with_reference(tmp_path)
    for step, acts in enumerate(ref["act"], start=1):
        for name, out in acts.items():
            at = lambda stat: run.series(tags.act(name, stat)).loc[step]
            assert at("mean") == pytest.approx(out.mean().item(), rel=1e-5, abs=1e-6)
            assert at("std") == pytest.approx(out.std().item(), rel=1e-4)
            assert at("frac_zero") == pytest.approx((out == 0).float().mean().item())
            assert at("frac_dead") == pytest.approx((out != 0).sum(0).eq(0).float().mean().item())
            assert at("nonfinite") == 0
            if name == "sig":
                sat = ((out < 0.01) | (out > 0.99)).float().mean().item()
                assert at("frac_saturated") == pytest.approx(sat)
                assert sat > 0.1  # the setup really saturates it
            else:
                assert math.isnan(at("frac_saturated"))
    assert run.series(tags.act("act1", "frac_dead")).iloc[0] >= 4 / 16


def test_every_statistic_of_the_tag_descriptors_is_recorded(tmp_path):
    """The stat names in runstore.tags are the whole contract: a name added there and not computed
    by a probe (or computed and not named there) shows up here."""
    run, ref, _ = _train_with_reference(tmp_path, steps=1)
    assert "warning" not in set(run.events.kind), run.events.message.tolist()
    have = set(run.scalar_tags())
    expected = {tags.act(m, s) for m in ref["act"][0] for s in tags.ACT_STATS}
    for p in ref["grad"][0]:
        expected |= {tags.grad(p, s) for s in tags.GRAD_STATS} | {tags.weight(p, s) for s in tags.WEIGHT_STATS}
        expected.add(tags.update_ratio(p))
    expected |= {tags.split_metric(split, s) for split in ("train", "val") for s in tags.LOGIT_STATS}
    assert expected <= have, sorted(expected - have)

    def per_layer(ts):
        return {t for t in ts if tags.parse(t)[0] in ("act", "grad", "weight", "update_ratio")}
    assert per_layer(have) == per_layer(expected)  # no layer statistic without a name in the descriptors


def test_gradient_weight_and_update_stats_match_torch(tmp_path):
    run, ref, _ = _train_with_reference(tmp_path)
    for step in range(1, 4):
        for name, g in ref["grad"][step - 1].items():
            assert run.series(tags.grad(name, "norm")).loc[step] == pytest.approx(g.norm().item(), rel=1e-5)
            assert run.series(tags.grad(name, "abs_mean")).loc[step] == pytest.approx(g.abs().mean().item(), rel=1e-5)
            assert run.series(tags.grad(name, "nonfinite")).loc[step] == 0
            w0, w1 = ref["before"][step - 1][name], ref["after"][step - 1][name]
            assert run.series(tags.update_ratio(name)).loc[step] == pytest.approx(
                ((w1 - w0).norm() / w0.norm()).item(), rel=1e-4)
            assert run.series(tags.weight(name, "norm")).loc[step] == pytest.approx(w1.norm().item(), rel=1e-5)


def test_histograms_match_torch(tmp_path):
    run, ref, _ = _train_with_reference(tmp_path, hist_bins=10)
    out = ref["act"][1]["fc2"]
    h = run.histograms(tags.act("fc2"))
    i = list(h.steps).index(2)
    assert h.lo[i] == pytest.approx(out.min().item()) and h.hi[i] == pytest.approx(out.max().item())
    expected = torch.histc(out, bins=10, min=out.min().item(), max=out.max().item())
    np.testing.assert_allclose(h.counts[i], expected.numpy(), atol=1)  # a value on a bin edge may move by one
    assert h.counts[i].sum() == out.numel()
    g = ref["grad"][0]["fc1.weight"]
    hg = run.histograms(tags.grad("fc1.weight"))
    assert hg.counts[0].sum() == g.numel() and hg.lo[0] == pytest.approx(g.min().item())


def test_logit_statistics_and_calibration_match_torch(tmp_path):
    run, ref, (vlogits, vy) = _train_with_reference(tmp_path)
    logits, loss = ref["logits"][0]
    p = logits.softmax(-1)
    assert run.series("train/loss").loc[1] == pytest.approx(loss, rel=1e-6)
    assert run.series("train/confidence").loc[1] == pytest.approx(p.max(-1).values.mean().item(), rel=1e-5)
    ent = -(p * p.log()).sum(-1).mean().item()
    assert run.series("train/entropy").loc[1] == pytest.approx(ent, rel=1e-5)
    # Calibration: 15 bins, accuracy and confidence per bin, and the expected calibration error.
    (step, table), = run.tables("val/calibration")
    vp = vlogits.softmax(-1)
    conf, pred = vp.max(-1)
    correct = (pred == vy).float()
    assert step == 3 and table["n"] == 32
    ece = 0.0
    for lo, hi, cnt, c, a in zip(table["bin_lo"], table["bin_hi"], table["count"], table["confidence"], table["accuracy"]):
        m = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        assert cnt == m.sum().item()
        if cnt:
            assert c == pytest.approx(conf[m].mean().item(), rel=1e-5)
            assert a == pytest.approx(correct[m].mean().item())
            ece += cnt / 32 * abs(a - c)
    assert table["ece"] == pytest.approx(ece, rel=1e-5)
    assert run.series("val/accuracy").iloc[-1] == pytest.approx(correct.mean().item())


def test_learning_rate_per_group_and_extra_scalars(tmp_path):
    model = Net()
    opt = torch.optim.SGD([{"params": model.fc1.parameters(), "lr": 0.5},
                           {"params": list(model.fc2.parameters()) + list(model.fc3.parameters())}], lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with probes.attach(model, opt, run_dir=tmp_path / "r") as rec:
        for _ in range(3):
            loss = model(torch.randn(4, 8)).pow(2).mean()
            opt.zero_grad(); loss.backward(); opt.step()
            rec.record_step(loss.item(), my_metric=torch.tensor(7.0))
            sched.step()
    run = runstore.load_run(tmp_path / "r")
    assert run.series("lr/group0").tolist() == [0.5, 0.25, 0.125]
    assert run.series("lr/group1").tolist() == [0.01, 0.005, 0.0025]
    assert run.series("train/my_metric").tolist() == [7.0, 7.0, 7.0]
    assert len(run.series("sys/wall_time")) == 3


def test_weights_are_copied_into_one_buffer_reused_across_sampled_steps(tmp_path, monkeypatch):
    """The update ratio needs the weights from before each step. Cloning the whole model every
    sampled step doubles its memory traffic; the copy is made once and refilled in place."""
    clones = []
    real_clone = torch._foreach_clone
    monkeypatch.setattr(torch, "_foreach_clone", lambda ts: clones.append(len(ts)) or real_clone(ts))
    run, ref, _ = _train_with_reference(tmp_path, steps=4)
    assert clones == [6]  # the first sampled step only: three Linear layers, weight and bias
    w0, w1 = ref["before"][3]["fc1.weight"], ref["after"][3]["fc1.weight"]
    assert run.series(tags.update_ratio("fc1.weight")).loc[4] == pytest.approx(((w1 - w0).norm() / w0.norm()).item(), rel=1e-4)


def test_update_ratio_of_bfloat16_weights_on_consecutive_sampled_steps(tmp_path):
    """Weights that are not float32 are converted for numpy on every step: a conversion kept from
    an earlier step would measure the update against stale weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rec = probes.attach(model, opt, run_dir=tmp_path / "run", every=1)
    x, y = torch.randn(32, 8, dtype=torch.bfloat16), torch.randint(0, 4, (32,))
    expected = []
    for _ in range(3):
        loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        w0 = model[0].weight.detach().float().clone()
        opt.step()
        w1 = model[0].weight.detach().float()
        expected.append(((w1 - w0).norm() / w0.norm()).item())
        rec.record_step(loss)
    rec.close()
    got = runstore.load_run(tmp_path / "run").series(tags.update_ratio("0.weight"))
    assert got.tolist() == pytest.approx(expected, rel=1e-4)
    assert min(expected) > 0


def test_update_ratio_of_channels_last_conv_weights_on_consecutive_sampled_steps(tmp_path):
    """A channels_last conv weight has no flat numpy view (flattening copies it), so nothing
    flattened at one step may be reused at the next."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    model = model.to(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = probes.attach(model, opt, run_dir=tmp_path / "run", every=1)
    x = torch.randn(16, 3, 8, 8).to(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (16,))
    expected = []
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        w0 = model[0].weight.detach().clone()
        opt.step()
        w1 = model[0].weight.detach()
        expected.append(((w1 - w0).norm() / w0.norm()).item())
        rec.record_step(loss)
    rec.close()
    run = runstore.load_run(tmp_path / "run")
    assert run.series(tags.update_ratio("0.weight")).tolist() == pytest.approx(expected, rel=1e-4)
    assert run.series(tags.weight("0.weight", "norm")).iloc[-1] == pytest.approx(model[0].weight.norm().item(), rel=1e-5)


class _RebindingSGD(torch.optim.Optimizer):
    """Plain SGD that gives every parameter new storage (p.data = ...) instead of updating it in place."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data = p.data - group["lr"] * p.grad


def test_update_ratio_when_the_optimizer_gives_parameters_new_storage(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = _RebindingSGD(model.parameters(), lr=0.5)
    rec = probes.attach(model, opt, run_dir=tmp_path / "run", every=1)
    ratios, norms = [], []
    for _ in range(3):
        x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
        w0 = model[0].weight.detach().clone()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w1 = model[0].weight.detach()
        ratios.append(((w1 - w0).norm() / w0.norm()).item())
        norms.append(w1.norm().item())
        rec.record_step(loss)
    rec.close()
    run = runstore.load_run(tmp_path / "run")
    assert run.series(tags.update_ratio("0.weight")).tolist() == pytest.approx(ratios, rel=1e-4)
    assert run.series(tags.weight("0.weight", "norm")).tolist() == pytest.approx(norms, rel=1e-5)


def test_one_weight_copy_at_a_time_when_the_trained_subset_changes(tmp_path):
    """Mixture-of-experts routing: a different subset of parameters has gradients at each step.
    The recorder keeps one copy of the weights, not one per subset it has seen."""
    import random
    torch.manual_seed(0)
    rng = random.Random(0)
    experts = nn.ModuleList(nn.Linear(64, 64) for _ in range(8))
    opt = torch.optim.SGD(experts.parameters(), lr=0.1)
    rec = probes.attach(experts, opt, run_dir=tmp_path / "run", every=1, record_histograms=False)
    for _ in range(12):
        opt.zero_grad(set_to_none=True)
        x = torch.randn(4, 64)
        loss = sum(experts[i](x).square().mean() for i in rng.sample(range(8), 2))
        loss.backward()
        opt.step()
        rec.record_step(loss)
        held = [g for plan in rec._plans.plans.values() for g in plan.groups if g.copy is not None]
        assert sum(g.copy_bytes for g in held) <= 2 * (64 * 64 + 64) * 4  # two experts' weights
    rec.close()
    run = runstore.load_run(tmp_path / "run")
    assert "warning" not in set(run.events.kind)
    assert len(run.series(tags.update_ratio("0.weight"))) >= 1


def test_zero_size_parameter_does_not_cost_the_others_their_statistics(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    empty = nn.Parameter(torch.zeros(0))
    opt = torch.optim.SGD(list(model.parameters()) + [empty], lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "run", every=1)
    for _ in range(2):
        loss = F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,))) + empty.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.record_step(loss)
    rec.close()
    run = runstore.load_run(tmp_path / "run")
    assert "warning" not in set(run.events.kind), run.events.message.tolist()
    assert len(run.series(tags.grad("0.weight", "norm"))) == 2
    assert len(run.series(tags.update_ratio("1.weight"))) == 2
