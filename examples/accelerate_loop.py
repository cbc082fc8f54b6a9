"""Accelerate (or plain DDP): no integration needed, two lines in your own loop
(pip install "traindiag[hf]" for accelerate itself).

    recorder = probes.attach(accelerator.unwrap_model(model), optimizer, run_dir="runs/x")  # after prepare()
    ...
    if accelerator.sync_gradients:  # once per real update, not per accumulated batch
        recorder.record_step(loss, logits=logits, targets=y)

unwrap_model gives the module itself, not its DistributedDataParallel wrapper (whose parameter
names carry a "module." prefix); the prepared optimizer may be passed as it is. On several
processes only rank 0 records (probes.attach returns a recorder that does nothing elsewhere).
Launch with `accelerate launch examples/accelerate_loop.py` or plain `python`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, without installing
from accelerate import Accelerator  # noqa: E402

import diagnostics  # noqa: E402
import probes  # noqa: E402
import runstore  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/accelerate_mlp")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    x = torch.randn(4096, 20)
    y = (x[:, :5].sum(1) > 0).long() + (x[:, 5:10].sum(1) > 0).long()  # 3 classes from the inputs
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    accelerator = Accelerator(gradient_accumulation_steps=2)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    recorder = probes.attach(accelerator.unwrap_model(model), optimizer, run_dir=args.run_dir, every=20,
                             overwrite=True, hparams={"lr": args.lr, "epochs": args.epochs, "accumulation": 2})
    with recorder:  # closes the run (failed, with the error, if training raises)
        for _ in range(args.epochs):
            for xb, yb in loader:
                with accelerator.accumulate(model):
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb)
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                if accelerator.sync_gradients:
                    recorder.record_step(loss, logits=logits, targets=yb)

    if accelerator.is_main_process:
        print(f"recorded into {args.run_dir}; advice:")
        for f in diagnostics.advise(runstore.load_run(args.run_dir)):
            print(f"  [{f.severity}] {f.rule}: {f.title}")


if __name__ == "__main__":
    main()
