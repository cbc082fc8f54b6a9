"""A plain Accelerate loop needs no integration: probes.attach(accelerator.unwrap_model(model),
optimizer) after accelerator.prepare records the gradients the optimizer applies, once per real
update under gradient accumulation (docs/integrations.md)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

accelerate = pytest.importorskip("accelerate", reason="the hf extra is not installed")

import probes  # noqa: E402
import runstore  # noqa: E402
from runstore import tags  # noqa: E402


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(48, 6, generator=g), torch.randint(0, 4, (48,), generator=g)
    return model, torch.optim.SGD(model.parameters(), lr=0.2), x, y


def test_accelerate_loop_with_accumulation(tmp_path):
    model, opt, x, y = _setup()
    accelerator = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    rec = probes.attach(accelerator.unwrap_model(model), opt, run_dir=tmp_path / "r", every=1)  # the wrapper is fine
    for xb, yb in loader:
        with accelerator.accumulate(model):
            loss = F.cross_entropy(model(xb), yb)
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
        if accelerator.sync_gradients:  # one record per real update
            rec.record_step(loss)
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert run.last_step == 4 and run.events.empty  # 12 batches, 3 per update; no "skipped step"

    # Plain torch: the gradient of each update is the mean over its three batches.
    ref, ref_opt, x, y = _setup()
    for step in range(1, 5):
        ref_opt.zero_grad()
        for b in range(3):
            i = ((step - 1) * 3 + b) * 4
            (F.cross_entropy(ref(x[i:i + 4]), y[i:i + 4]) / 3).backward()
        for name, p in ref.named_parameters():
            assert run.series(tags.grad(name, "norm"))[step] == pytest.approx(p.grad.norm().item(), rel=1e-5)
        ref_opt.step()
