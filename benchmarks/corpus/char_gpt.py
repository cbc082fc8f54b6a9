"""A character-level GPT in the style of nanoGPT's train.py (shakespeare_char config, shrunk):
random-offset batches, AdamW with weight decay 0.1 on matrices, warmup + cosine decay, gradient
clipping at 1, train/val loss estimated every eval_interval steps.

Variants: healthy (lr 1e-3, as nanoGPT); lr_high (lr x100 without clipping: a mild but real fault,
the loss does not blow up but ends clearly higher while the weight norms grow ~9x); lr_x30 (issue 14's
nanoGPT case: AdamW at lr 3e-2, everything else as healthy, clipping at 1 included).
"""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

import probes
from common import char_batches, parse

VARIANTS = {"healthy": 1e-3, "lr_high": 1e-1, "lr_x30": 3e-2}
a = parse(VARIANTS)
lr_max = VARIANTS[a.variant]
block_size, batch_size, n_layer, n_head, n_embd = 32, 16, 2, 4, 32
max_iters, warmup, eval_interval, eval_iters = 400, 40, 40, 4
grad_clip = 0.0 if a.variant == "lr_high" else 1.0

get_batch, vocab_size = char_batches(block_size, batch_size)


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(n_embd, dim=2)
        q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(n_embd), CausalSelfAttention(), nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList([Block() for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT
        self.apply(self._init)

    def _init(self, m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None):
        pos = torch.arange(idx.size(1))
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1)) if targets is not None else None
        return logits, loss


def get_lr(it):
    if it < warmup:
        return lr_max * (it + 1) / warmup
    ratio = (it - warmup) / (max_iters - warmup)
    return lr_max / 10 + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr_max - lr_max / 10)


model = GPT()
decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=lr_max, betas=(0.9, 0.99))


@torch.no_grad()
def estimate_loss():
    out = {}
    model.eval()
    for split in ("train", "val"):
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = get_batch(split)
            _, loss = model(X, Y)
            losses[k] = loss.item()
        out[split] = losses.mean()
    model.train()
    return out


rec = probes.attach(model, optimizer, run_dir=a.run_dir, every=10,
                    hparams={"lr": lr_max, "batch_size": batch_size, "block_size": block_size, "weight_decay": 0.1})
X, Y = get_batch("train")
for it in range(max_iters):
    for g in optimizer.param_groups:
        g["lr"] = get_lr(it)
    logits, loss = model(X, Y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    rec.record_step(loss, logits=logits, targets=Y)
    X, Y = get_batch("train")  # prefetch, as nanoGPT does (after recording)
    if (it + 1) % eval_interval == 0:
        losses = estimate_loss()
        rec.record_eval(loss=losses["val"])
rec.close()
