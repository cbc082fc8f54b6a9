"""probes.integrations.lightning.ProbesCallback in real, tiny Lightning fits on the CPU: what it
records equals what plain torch computes for the same steps (gradient accumulation, clipping and
bf16 mixed precision included), an injected learning-rate fault is diagnosed, and a fit that
raises leaves a failed run."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pl = pytest.importorskip("lightning.pytorch", reason="the lightning extra is not installed")

import diagnostics  # noqa: E402
import runstore  # noqa: E402
from probes.integrations.lightning import ProbesCallback  # noqa: E402
from runstore import schema, tags  # noqa: E402

BLOW_UP_RULES = {"lr_too_high", "nan_loss", "exploding_gradients"}
BF16 = torch.backends.mkldnn.is_available()  # CPU autocast to bfloat16
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def _data(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


class Classifier(pl.LightningModule):
    def __init__(self, lr=0.1, fail_at=None):
        super().__init__()
        self.save_hyperparameters()
        self.net = _net()

    def training_step(self, batch, batch_idx):
        if self.hparams.fail_at is not None and batch_idx == self.hparams.fail_at:
            raise RuntimeError("data loader gave a broken batch")
        x, y = batch
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        return {"logits": logits}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _fit(run_dir, *, steps, lr=0.1, precision="32-true", accumulate=2, clip=0.5, every=1, fail_at=None, val=False):
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = pl.Trainer(max_steps=steps, accumulate_grad_batches=accumulate, gradient_clip_val=clip,
                         precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=2 if val else 0,
                         val_check_interval=None, check_val_every_n_epoch=1,
                         callbacks=[ProbesCallback(run_dir, every=every)])
    module = Classifier(lr=lr, fail_at=fail_at)
    trainer.fit(module, loader, loader if val else None)
    return module, runstore.load_run(run_dir)


def _plain_torch(steps, *, lr=0.1, accumulate=2, clip=0.5, bf16=False):
    """The same fit by hand: per optimizer step its loss, gradient norms (after clipping) and
    update ratios, as probes should have recorded them."""
    net = _net()
    x, y = _data()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    names = [n for n, _ in net.named_parameters()]
    out, batch = [], 0
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.0
        for _ in range(accumulate):
            xb, yb = x[batch * 8:(batch + 1) * 8], y[batch * 8:(batch + 1) * 8]
            batch = (batch + 1) % 8
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                part = F.cross_entropy(net(xb), yb) / accumulate
            part.backward()
            loss += part.item()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        grads = {n: p.grad.norm().item() for n, p in zip(names, net.parameters())}
        before = [p.detach().clone() for p in net.parameters()]
        opt.step()
        ratios = {n: ((p - b).norm() / b.norm()).item() for n, p, b in zip(names, net.parameters(), before)}
        out.append((loss, grads, ratios))
    return out


@pytest.mark.parametrize("precision", ["32-true"] + (["bf16-mixed"] if BF16 else []))
def test_recorded_values_equal_plain_torch(tmp_path, precision):
    """Loss (mean over the accumulated batches), gradients as the optimizer applies them (summed
    over two batches, then clipped) and update ratios, step by step."""
    _, run = _fit(tmp_path / "run", steps=4, precision=precision)
    want = _plain_torch(4, bf16=precision == "bf16-mixed")
    assert run.status == schema.FINISHED and run.last_step == 4
    assert run.meta["total_steps"] == 4 and run.meta["hparams"]["accumulate_grad_batches"] == 2
    loss = run.series(tags.TRAIN_LOSS)
    for step, (w_loss, w_grads, w_ratios) in enumerate(want, start=1):
        assert loss[step] == pytest.approx(w_loss, rel=1e-5)
        for name, norm in w_grads.items():
            assert run.series(tags.grad(f"net.{name}", "norm"))[step] == pytest.approx(norm, rel=1e-4), (step, name)
        for name, ratio in w_ratios.items():
            assert run.series(tags.update_ratio(f"net.{name}"))[step] == pytest.approx(ratio, rel=1e-3), (step, name)
    # The clip bound the applied gradients: their total norm is the clip value, not the raw norm.
    total = math.sqrt(sum(n ** 2 for n in want[0][1].values()))
    assert total == pytest.approx(0.5, rel=1e-4)
    # Read before the update, as in a plain loop: no note that gradients come from inside step().
    assert not run.events["message"].str.contains("closure").any(), run.events
    # One set of activation statistics per step (the first accumulated batch), no "#2" from the second.
    assert not [t for t in run.scalar_tags() if "#" in t]
    assert len(run.series(tags.act("net.0", "mean"))) == 4
    assert run.series(tags.split_metric("train", "accuracy")).between(0, 1).all()


def test_validation_loss_and_logit_statistics(tmp_path):
    module, run = _fit(tmp_path / "run", steps=8, val=True, every=4)
    val = run.series("val/loss")
    assert list(val.index) == [4, 8]  # after each epoch of 4 steps
    # The last validation ran on the final weights: recompute it with plain torch.
    x, y = _data()
    with torch.no_grad():
        logits = module.net(x[:16])
    p = logits.softmax(-1)
    assert val[8] == pytest.approx(F.cross_entropy(logits, y[:16]).item(), rel=1e-5)
    assert run.series("val/confidence")[8] == pytest.approx(p.max(-1).values.mean().item(), rel=1e-5)
    assert run.series("val/accuracy")[8] == pytest.approx((p.argmax(-1) == y[:16]).float().mean().item())
    assert run.tables(tags.calibration("val"))[-1][1]["n"] == 16


def test_lr_times_100_is_diagnosed(tmp_path):
    healthy = {f.rule for f in diagnostics.advise(_fit(tmp_path / "ok", steps=24, lr=0.1, every=4, accumulate=1)[1])
               if f.severity != "info"}
    _, run = _fit(tmp_path / "bad", steps=24, lr=10.0, every=4, accumulate=1)
    faulty = {f.rule for f in diagnostics.advise(run) if f.severity != "info"}
    assert not healthy & BLOW_UP_RULES, healthy
    assert faulty & BLOW_UP_RULES, faulty


def test_the_examples_blow_up_is_diagnosed(tmp_path):
    """examples/lightning_classifier.py --lr 20, as a user runs it. Unlike the SGD run above, its
    momentum and clipping blow the loss up and kill every ReLU within the first steps: from then on
    no layer weight has a gradient, its update ratio reads zero, and the two oversized records
    (of 48, every 10 steps) fall outside the Updates table's 90th percentile, so the table reads
    "in range". Weights without a gradient say nothing about the step size; the loss does."""
    sys.path.insert(0, str(EXAMPLES))
    import lightning_classifier

    lightning_classifier.main(["--lr", "20", "--run-dir", str(tmp_path / "run")])
    findings = diagnostics.advise(runstore.load_run(tmp_path / "run"))
    first = next(f for f in findings if f.rank >= 1)
    assert first.rule == "lr_too_high" and first.severity == "critical", [(f.rule, f.severity) for f in findings]
    dead = next(f for f in findings if f.rule == "dead_relu")
    assert "lr_too_high" in dead.evidence["likely_caused_by"]


def test_exception_marks_the_run_failed(tmp_path):
    with pytest.raises(RuntimeError, match="broken batch"):
        _fit(tmp_path / "run", steps=10, fail_at=5, accumulate=1)
    run = runstore.load_run(tmp_path / "run")
    assert run.status == schema.FAILED and "broken batch" in run.meta["error"]
    assert run.last_step == 5  # the steps before the failure are kept


def test_bad_options_fail_when_the_callback_is_made(tmp_path):
    with pytest.raises(TypeError, match="evry"):
        ProbesCallback(tmp_path / "r", evry=10)
    with pytest.raises(ValueError, match="every"):
        ProbesCallback(tmp_path / "r", every=0)
    with pytest.raises(TypeError, match="logits"):
        ProbesCallback(tmp_path / "r", logits=3)
