"""PyTorch Lightning: one callback records the fit (pip install "traindiag[lightning]").

    python examples/lightning_classifier.py                  # a healthy fit
    python examples/lightning_classifier.py --lr 20          # far too high: see the advice

The data (two interleaved spirals, 3 classes) is generated here; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, without installing
import lightning.pytorch as pl  # noqa: E402

import diagnostics  # noqa: E402
import runstore  # noqa: E402
from probes.integrations.lightning import ProbesCallback  # noqa: E402


def spirals(n: int, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    r = torch.rand(n, generator=g)
    angle = y * (2 * math.pi / classes) + r * 4 + 0.2 * torch.randn(n, generator=g)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], 1), y


class SpiralNet(pl.LightningModule):
    def __init__(self, lr: float = 0.3, width: int = 64):
        super().__init__()
        self.save_hyperparameters()  # recorded as the run's hyperparameters
        self.net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        # Returning the logits lets the callback record confidence, entropy and accuracy.
        return {"loss": F.cross_entropy(logits, y), "logits": logits}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y))
        return {"logits": logits}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/lightning_spirals")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    x, y = spirals(2048)
    vx, vy = spirals(512, seed=1)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(vx, vy), batch_size=256)

    callback = ProbesCallback(args.run_dir, every=10, overwrite=True)  # the one line to add
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, gradient_clip_val=1.0)
    trainer.fit(SpiralNet(lr=args.lr), train, val)

    print(f"\nrecorded into {args.run_dir}; advice:")
    for f in diagnostics.advise(runstore.load_run(args.run_dir)):
        print(f"  [{f.severity}] {f.rule}: {f.title}")


if __name__ == "__main__":
    main()
