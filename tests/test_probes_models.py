"""Probes on real model shapes: tuple outputs, shared and in-place activations, frozen parameters,
gradient accumulation, mixed precision, NaN values, torch.compile and CUDA."""

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
import runstore
from runstore import tags


def _steps(model, opt, rec, make_batch, n=2, loss_fn=None):
    for _ in range(n):
        x, y = make_batch()
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        loss = (loss_fn or (lambda o, t: F.cross_entropy(o.reshape(-1, o.shape[-1]), t.reshape(-1))))(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.record_step(loss)


class SeqModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.block = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        a, _ = self.attn(h, h, h)
        return self.head(self.block(a))


def test_tuple_outputs_lstm_attention_transformer(tmp_path):
    torch.manual_seed(0)
    model = SeqModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    _steps(model, opt, rec, lambda: (torch.randint(0, 20, (4, 7)), torch.randint(0, 5, (4, 7))))
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    for module in ("lstm", "attn", "block.linear1", "block.norm2", "head"):
        assert len(run.series(tags.act(module, "mean"))) == 2, module
        assert run.histograms(tags.act(module)) is not None
    # The LSTM's units are its hidden features (last dim of the (N, T, H) output).
    assert 0 <= run.series(tags.act("lstm", "frac_dead")).iloc[0] <= 1
    assert len(run.series(tags.update_ratio("lstm.weight_hh_l0"))) == 2
    assert len(run.series(tags.grad("attn.in_proj_weight", "norm"))) == 2


class ResBlock(nn.Module):
    """ResNet style: one ReLU module, called twice per forward, the second time in place."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.fc1(x))
        return self.relu(self.fc2(out) + x)


def test_shared_inplace_relu_gets_one_tag_per_call(tmp_path):
    torch.manual_seed(0)
    model = ResBlock()
    seen = {}
    def keep(module, args, out):  # returns None, so the output is left as it is
        seen.setdefault("fc2", out.detach().clone())
    model.fc2.register_forward_hook(keep)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    _steps(model, opt, rec, lambda: (torch.randn(16, 8), None), n=1, loss_fn=lambda o, t: o.pow(2).mean())
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert len(run.series(tags.act("relu", "mean"))) == 1
    assert len(run.series(tags.act("relu#2", "mean"))) == 1
    # fc2's output is recorded before anything downstream can modify it in place.
    assert run.series(tags.act("fc2", "mean")).iloc[0] == pytest.approx(seen["fc2"].mean().item(), rel=1e-5)
    assert run.series(tags.act("fc2", "frac_zero")).iloc[0] == 0.0


def test_frozen_and_unoptimised_parameters(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)  # frozen
    opt = torch.optim.SGD(model[2].parameters(), lr=0.1)  # model[3] trains but is not in the optimizer
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    _steps(model, opt, rec, lambda: (torch.randn(8, 4), torch.randint(0, 2, (8,))), n=2)
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    grad_params = set(tags.names(run.scalar_tags(), "grad"))
    assert grad_params == {"2.weight", "2.bias"}  # only what the optimizer applies
    assert set(tags.names(run.scalar_tags(), "update_ratio")) == {"2.weight", "2.bias"}
    assert len(run.series(tags.act("0", "mean"))) == 2  # frozen layers still show activations


def test_gradient_accumulation_records_accumulated_gradient_and_first_micro_batch(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    xs = [torch.randn(8, 4) for _ in range(3)]
    opt.zero_grad()
    first_act = None
    for i, x in enumerate(xs):
        out = model(x)
        if i == 0:
            first_act = model[1](model[0](x)).detach()
        (out.pow(2).mean() / 3).backward()
    total_grad = model[0].weight.grad.norm().item()
    opt.step()
    rec.record_step(torch.tensor(1.0))
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert run.series(tags.grad("0.weight", "norm")).iloc[0] == pytest.approx(total_grad, rel=1e-5)
    assert run.series(tags.act("1", "mean")).iloc[0] == pytest.approx(first_act.mean().item(), rel=1e-5)
    assert run.series(tags.act("1", "mean")).index.tolist() == [1]


def test_autocast_with_grad_scaler_records_unscaled_grads_and_skipped_steps(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    unscaled = []
    for step in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        if step == 1:
            model[0].weight.grad[0, 0] = float("inf")  # the scaler must skip this step
        scaler.unscale_(opt)
        unscaled.append(model[2].weight.grad.norm().item())
        scaler.step(opt)
        scaler.update()
        rec.record_step(loss, logits=logits, targets=y)
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    g = run.series(tags.grad("2.weight", "norm"))
    assert g.index.tolist() == [1, 3]  # step 2 was skipped by the scaler
    assert g.loc[1] == pytest.approx(unscaled[0], rel=1e-4) and g.loc[3] == pytest.approx(unscaled[2], rel=1e-4)
    ev = run.events
    assert ev[ev.kind == "skipped_step"].step.tolist() == [2]
    assert not math.isnan(run.series(tags.act("1", "mean")).iloc[0])  # bf16 activations reduced in float32


def test_nan_and_inf_are_counted_and_never_crash(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    x = torch.randn(8, 4)
    x[0, 0] = float("nan")
    x[1, 1] = float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning may reach the user's console
        logits = model(x)
        loss = F.cross_entropy(logits, torch.zeros(8, dtype=torch.long))
        opt.zero_grad(); loss.backward(); opt.step()
        rec.record_step(loss, logits=logits, targets=torch.zeros(8, dtype=torch.long))
        rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert run.status == "finished"
    assert "warning" not in set(run.events.kind), run.events.message.tolist()  # no probe failed
    assert run.series(tags.act("0", "nonfinite")).iloc[0] >= 2
    assert run.series(tags.grad("0.weight", "nonfinite")).iloc[0] > 0
    assert math.isnan(run.series("train/loss").iloc[0])
    assert "nonfinite_loss" in set(run.events.kind)
    h = run.histograms(tags.act("0"))
    assert math.isfinite(h.lo[0]) and math.isfinite(h.hi[0])  # histograms keep the finite values


def test_exploding_values_are_recorded_without_numpy_warnings(tmp_path):
    """Finite values whose squares overflow float32 (an exploding network) give infinite norms,
    not RuntimeWarnings on the user's console."""
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight.fill_(1e30)
    opt = torch.optim.SGD(model.parameters(), lr=1e10)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            logits = model(x)
            loss = F.mse_loss(logits, torch.zeros_like(logits))  # ~1e60: inf in float32
            opt.zero_grad(); loss.backward(); opt.step()
            rec.record_step(loss, logits=logits, targets=y)
        rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert "warning" not in set(run.events.kind), run.events.message.tolist()
    assert math.isinf(run.series(tags.weight("2.weight", "norm")).iloc[0])
    assert run.series(tags.act("2", "nonfinite")).iloc[0] == 0  # huge, but finite


def test_compiled_model_records_everything_but_activations(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    compiled = torch.compile(model, backend="aot_eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(compiled, opt, run_dir=tmp_path / "r", every=1)
    _steps(compiled, opt, rec, lambda: (torch.randn(8, 4), torch.randint(0, 2, (8,))), n=3)
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert tags.names(run.scalar_tags(), "act") == []
    assert set(tags.names(run.scalar_tags(), "grad")) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert len(run.series(tags.update_ratio("0.weight"))) == 3
    assert any("torch.compile" in m for m in run.events.message)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_model(tmp_path):
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1, flush_steps=1000, flush_secs=1000)
    batch = (torch.randn(8, 8, device="cuda"), torch.randint(0, 4, (8,), device="cuda"))
    _steps(model, opt, rec, lambda: batch, n=1)  # warm-up (first-call allocations)
    torch.cuda.synchronize()
    # Recording steps that do not flush must never make the CPU wait for the GPU.
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            logits = model(batch[0])
            loss = F.cross_entropy(logits, batch[1])
            opt.zero_grad(); loss.backward(); opt.step()
            rec.record_step(loss, logits=logits, targets=batch[1])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert len(run.series("train/loss")) == 4 and len(run.series(tags.act("1", "frac_dead"))) == 4
    assert run.histograms(tags.grad("0.weight")).counts.sum() > 0
