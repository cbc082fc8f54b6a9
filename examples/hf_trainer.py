"""Hugging Face Trainer: one callback records the run (pip install "traindiag[hf]").

A small GPT-2, built from a config (nothing is downloaded), learns one-digit addition ("7+8=15;")
from text generated here. The labels are -100 on the prompt and the padding: the Trainer's loss and
the probes' per-token confidence, entropy and accuracy leave them out alike.

    python examples/hf_trainer.py                        # a healthy run
    python examples/hf_trainer.py --lr 0.3               # far too high: see the advice
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

import diagnostics  # noqa: E402
import runstore  # noqa: E402
from arithmetic_text import VOCAB, batch, length  # noqa: E402
from probes.integrations.hf import ProbesCallback  # noqa: E402


class Additions(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int):
        self.ids, self.labels = batch(random.Random(seed), n, digits=1)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        # GPT-2 shifts the labels itself: labels[t + 1] is scored against the logits at t.
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/hf_gpt2_addition")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=10, help="record layer statistics every N steps")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=length(1), n_embd=48, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)  # its output layer is tied to the token embedding: recorded once
    training = TrainingArguments(
        output_dir=str(Path(args.run_dir).parent / "hf_trainer_output"), max_steps=args.steps,
        learning_rate=args.lr, per_device_train_batch_size=16, gradient_accumulation_steps=2,
        eval_strategy="steps", eval_steps=100, logging_steps=50, save_strategy="no", report_to=[],
        use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=training, train_dataset=Additions(8192, seed=0),
                      eval_dataset=Additions(512, seed=1),
                      callbacks=[ProbesCallback(args.run_dir, every=args.every, overwrite=True)])  # the one line to add
    trainer.train()

    print(f"\nrecorded into {args.run_dir}; advice:")
    for f in diagnostics.advise(runstore.load_run(args.run_dir)):
        print(f"  [{f.severity}] {f.rule}: {f.title}")


if __name__ == "__main__":
    main()
