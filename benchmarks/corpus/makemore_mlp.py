"""makemore's MLP (Bengio et al. 2003) on names: a 3-character context, an embedding table, one
tanh hidden layer, minibatches of 32 drawn at random, SGD with a step decay, the train/val split of
Karpathy's "building makemore" lecture; evaluated on the full splits every 100 steps.

Variants: healthy (2,000 names); overfit (100 names, a wider layer and a larger step without decay,
trained as long: the train loss flattens far below a validation loss that climbs, the makemore
overfit of issue 14).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
from common import names, parse

VARIANTS = {"healthy": (2000, 100, 10, 0.1), "overfit": (100, 300, 16, 0.2)}
a = parse(VARIANTS)
n_names, hidden, emb, lr = VARIANTS[a.variant]
block = 3

words = names(n_names + 500)
train_words, val_words = words[:n_names], words[n_names:]


def build(ws):
    X, Y = [], []
    for w in ws:
        ctx = [0] * block
        for c in w + [0]:
            X.append(ctx)
            Y.append(c)
            ctx = ctx[1:] + [c]
    return torch.tensor(X), torch.tensor(Y)


Xtr, Ytr = build(train_words)
Xva, Yva = build(val_words)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.C = nn.Embedding(27, emb)
        self.hidden = nn.Linear(block * emb, hidden)
        self.act = nn.Tanh()
        self.out = nn.Linear(hidden, 27)
        with torch.no_grad():  # "fixing the initial loss" from the lecture
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()

    def forward(self, x):
        return self.out(self.act(self.hidden(self.C(x).view(len(x), -1))))


model = MLP()
opt = torch.optim.SGD(model.parameters(), lr=lr)
steps = 2000
rec = probes.attach(model, opt, run_dir=a.run_dir, every=20, hparams={"lr": lr, "batch_size": 32, "names": n_names})
for i in range(steps):
    ix = torch.randint(0, len(Xtr), (32,))
    logits = model(Xtr[ix])
    loss = F.cross_entropy(logits, Ytr[ix])
    opt.zero_grad()
    loss.backward()
    for g in opt.param_groups:
        g["lr"] = lr if i < steps * 2 // 3 or a.variant == "overfit" else lr / 10
    opt.step()
    rec.record_step(loss, logits=logits, targets=Ytr[ix])
    if (i + 1) % 100 == 0:
        with torch.no_grad():
            vl = model(Xva)
            rec.record_eval(loss=F.cross_entropy(vl, Yva), logits=vl, targets=Yva)
rec.close()
