"""A small character-level language model trained with nanoGPT's loop (random-offset batches, AdamW,
gradient clipping, the next batch fetched while the step is still in flight), and the bugs of such
loops, one per variant.

Variants: healthy (linear warmup, then cosine decay all the way to 0 at the last step; the step is
recorded with the batch it trained on); healthy_onecycle (torch's OneCycleLR stepped per batch, as
it is meant to be); prefetched_targets (nanoGPT's loop as written, with the recording added where
its logging is: after `X, Y = get_batch('train')` has already fetched the next batch, so the targets
passed to record_step belong to another batch than the logits and the loss).
"""

import math

import torch
import torch.nn as nn
from torch.nn import functional as F

import probes
from common import char_batches, parse

VARIANTS = ("healthy", "healthy_onecycle", "prefetched_targets")
a = parse(VARIANTS)
v = a.variant
block_size, batch_size, n_head, n_embd = 32, 16, 4, 48
max_iters, warmup, eval_interval, eval_iters, learning_rate = 400, 40, 40, 4, 3e-3
gradient_accumulation_steps = 1

get_batch, vocab_size = char_batches(block_size, batch_size)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))

    def forward(self, x):
        B, T, C = x.size()
        q, k, val = self.c_attn(self.ln_1(x)).split(n_embd, dim=2)
        q, k, val = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, val))
        y = F.scaled_dot_product_attention(q, k, val, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp(self.ln_2(x))


class CharLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.block, self.ln_f = Block(), nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx, targets=None):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        logits = self.lm_head(self.ln_f(self.block(x)))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1))
        return logits, loss


def get_lr(it):
    """nanoGPT's schedule with min_lr = 0: warmup, then cosine to 0 at the last iteration."""
    if it < warmup:
        return learning_rate * (it + 1) / warmup
    return 0.5 * learning_rate * (1 + math.cos(math.pi * (it - warmup) / (max_iters - 1 - warmup)))


model = CharLM()
optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.99), weight_decay=0.1)
onecycle = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=max_iters)
            if v == "healthy_onecycle" else None)


@torch.no_grad()
def estimate_loss():
    model.eval()
    losses = torch.zeros(eval_iters)
    for k in range(eval_iters):
        _, losses[k] = model(*get_batch("val"))
    model.train()
    return losses.mean()


rec = probes.attach(model, optimizer, run_dir=a.run_dir, every=10,
                    hparams={"lr": learning_rate, "batch_size": batch_size, "block_size": block_size,
                             "weight_decay": 0.1})
X, Y = get_batch("train")
for it in range(max_iters):
    if onecycle is None:
        for g in optimizer.param_groups:
            g["lr"] = get_lr(it)
    for micro_step in range(gradient_accumulation_steps):
        logits, loss = model(X, Y)
        loss = loss / gradient_accumulation_steps
        if v == "prefetched_targets":
            X, Y = get_batch("train")  # nanoGPT: "immediately async prefetch next batch"
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    # nanoGPT logs `lossf = loss.item() * gradient_accumulation_steps`; targets=Y as in the README
    rec.record_step(loss * gradient_accumulation_steps, logits=logits, targets=Y)
    if onecycle is not None:
        onecycle.step()
    if v != "prefetched_targets":
        X, Y = get_batch("train")  # fetched after the step is recorded: Y is still this batch's
    if (it + 1) % eval_interval == 0:
        rec.record_eval(loss=estimate_loss())
rec.close()
