"""A small character-level GPT learning to add ("7+8=15;"), on text generated on the fly, recorded with the
probes in a plain PyTorch loop: logits (B, T, V), targets (B, T) with -100 on the prompt and the
padding, an output layer tied to the token embedding, and a model that returns (logits, loss).

    python examples/char_gpt.py                      # 300 steps, ~20 s on a laptop CPU
    python examples/char_gpt.py --lr 0.3             # too high a learning rate: see the advice
    streamlit run app.py -- --runs-dir runs          # then look at the run
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
import diagnostics  # noqa: E402
import probes  # noqa: E402
import runstore  # noqa: E402
from arithmetic_text import IGNORE, VOCAB, batch, decode, length  # noqa: E402


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    def __init__(self, vocab: int, block: int, dim: int = 48, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(block, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied: the probes record this weight once, as tok.weight
        # GPT-2's initialisation: with nn.Embedding's N(0, 1) the tied output layer would start with
        # logits far from uniform, and the first loss far above ln(vocabulary) (bad_init_loss).
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        return logits, loss


def train(run_dir, steps=300, lr=5e-3, batch_size=32, digits=1, every=10, seed=0, overwrite=True, quiet=False) -> Path:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    block = length(digits) - 1
    model = CharGPT(VOCAB, block)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    recorder = probes.attach(model, optimizer, run_dir=run_dir, every=every, overwrite=overwrite,
                             hparams={"lr": lr, "batch_size": batch_size, "steps": steps, "digits": digits, "optimizer": "adamw"},
                             meta={"description": f"character-level GPT learning {digits}-digit addition", "total_steps": steps,
                                   "task": "language_model"})  # how the rules judge its loss (docs/diagnostics.md)
    with recorder:
        for step in range(1, steps + 1):
            ids, labels = batch(rng, batch_size, digits)
            x, targets = ids[:, :-1], labels[:, 1:]  # predict the next character
            logits, loss = model(x, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            # -100 targets (prompt, padding) count in no statistic: per-token confidence, entropy
            # and accuracy are over the answer characters only, as the loss is.
            recorder.record_step(loss, logits=logits, targets=targets, grad_norm=grad_norm)
            if step % 100 == 0 or step == steps:
                val_ids, val_labels = batch(random.Random(10_000 + step), 256, digits)
                with torch.no_grad():
                    val_logits, val_loss = model(val_ids[:, :-1], val_labels[:, 1:])
                recorder.record_eval(loss=val_loss, logits=val_logits, targets=val_labels[:, 1:])
                if not quiet:
                    print(f"step {step:4d}  loss {loss.item():.3f}  val {val_loss.item():.3f}  "
                          f"ppl {math.exp(min(val_loss.item(), 50)):.2f}  e.g. {_sample(model, '7+8=' if digits == 1 else '12+35=')}")
    return recorder.run_dir


@torch.no_grad()
def _sample(model, prompt: str) -> str:
    from arithmetic_text import STOI
    idx = torch.tensor([[STOI[c] for c in prompt]])
    for _ in range(model.pos.num_embeddings + 1 - idx.shape[1]):  # up to the longest line
        logits, _ = model(idx)
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return decode(idx[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/char_gpt")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-3,
                    help="5e-3 reaches a val loss of ~0.14 in 300 steps; 1e-2 grows the weights 7x and stalls at ~0.5")
    ap.add_argument("--digits", type=int, default=1, help="digits per operand (2 needs thousands of steps)")
    ap.add_argument("--every", type=int, default=10, help="layer statistics every N steps")
    args = ap.parse_args(argv)
    run_dir = train(args.run_dir, steps=args.steps, lr=args.lr, digits=args.digits, every=args.every)
    print(f"\nrecorded into {run_dir}; advice:")
    for f in diagnostics.advise(runstore.load_run(run_dir)):
        print(f"  [{f.severity}] {f.rule}: {f.title}")


if __name__ == "__main__":
    main()
