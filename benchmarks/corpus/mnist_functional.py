"""pytorch/examples' mnist, shrunk to 8x8 digits: two convolutions and two Linear layers whose
activations are applied functionally (F.relu, F.max_pool2d, so no activation module exists to
watch), dropout, log_softmax with nll_loss, Adadelta at lr 1 with StepLR(gamma 0.7) stepped per
epoch, the test set evaluated after every epoch.

Variants: healthy; lr_high (lr x30: the network dies, which no activation module can show).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
from common import digits, parse

VARIANTS = {"healthy": 1.0, "lr_high": 30.0}
a = parse(VARIANTS)
lr = VARIANTS[a.variant]
xt, yt, xv, yv = digits()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, 1, padding=1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


model = Net()
optimizer = torch.optim.Adadelta(model.parameters(), lr=lr)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
rec = probes.attach(model, optimizer, run_dir=a.run_dir, every=5, hparams={"lr": lr, "batch_size": 64})
for epoch in range(6):
    model.train()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 64):
        idx = perm[i:i + 64]
        optimizer.zero_grad()
        output = model(xt[idx])
        loss = F.nll_loss(output, yt[idx])
        loss.backward()
        optimizer.step()
        rec.record_step(loss, logits=output, targets=yt[idx])
    model.eval()
    with torch.no_grad():
        out = model(xv)
        rec.record_eval(loss=F.nll_loss(out, yv), logits=out, targets=yv)
    scheduler.step()
rec.close()
