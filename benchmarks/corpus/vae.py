"""pytorch/examples' VAE, shrunk to 8x8 digits: fc1 -> (fc21, fc22) -> reparameterize -> fc3 ->
fc4 with ReLU and a sigmoid output, the loss BCE + KLD summed over the batch (reduction='sum', as
the example), Adam at 1e-3, the test loss per example after every epoch. No logits: a generative
model whose loss has an unknown floor.

Variants: healthy (the summed loss, as the example); healthy_mean (the same loss divided by the
batch size: Adam's steps do not change, and neither may the advice); lr_low (Adam at 1e-5).
"""

import torch
import torch.nn.functional as F
from torch import nn

import probes
from common import digits, parse

VARIANTS = {"healthy": 1e-3, "healthy_mean": 1e-3, "lr_low": 1e-5}
a = parse(VARIANTS)
lr = VARIANTS[a.variant]
xt, _, xv, _ = digits(normalize=False)
xt, xv = xt.reshape(-1, 64) / 16.0, xv.reshape(-1, 64) / 16.0


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc21, self.fc22 = nn.Linear(128, 8), nn.Linear(128, 8)
        self.fc3, self.fc4 = nn.Linear(8, 128), nn.Linear(128, 64)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def encode(self, x):
        h1 = self.relu1(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(self.relu2(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


model = VAE()
optimizer = torch.optim.Adam(model.parameters(), lr=lr)
rec = probes.attach(model, optimizer, run_dir=a.run_dir, every=5, hparams={"lr": lr, "batch_size": 128})
for epoch in range(30):
    model.train()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 128):
        data = xt[perm[i:i + 128]]
        optimizer.zero_grad()
        recon, mu, logvar = model(data)
        loss = loss_function(recon, data, mu, logvar)
        if a.variant == "healthy_mean":
            loss = loss / len(data)
        loss.backward()
        optimizer.step()
        rec.record_step(loss)
    model.eval()
    with torch.no_grad():
        recon, mu, logvar = model(xv)
        test_loss = loss_function(recon, xv, mu, logvar).item() / len(xv)
    rec.record_eval(loss=test_loss if a.variant == "healthy_mean" else test_loss * 128)
rec.close()
