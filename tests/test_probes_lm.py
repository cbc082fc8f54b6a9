"""Language-model shapes in the probes: logits (B, T, V) with targets (B, T) whose ignored positions
(-100, or a padding id) count in none of confidence, entropy, accuracy, their histogram and the
calibration table; model outputs given as a dict, ModelOutput-like mapping or (logits, loss);
tied input/output embeddings recorded once."""

import math
import random
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
import runstore
from probes import logits as L
from probes.histograms import fixed_numpy
from runstore import tags

V, PAD = 11, 0


def _batch(seed=0):
    """Logits (3, 7, V) and targets with a prompt (-100) at the start and padding (PAD) at the end."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, V, generator=g) * 2
    targets = torch.randint(1, V, (3, 7), generator=g)
    targets[:, :2] = -100
    targets[1, 4:] = PAD
    return logits, targets


def _plain(logits, targets, ignore=(-100, PAD)):
    keep = ~torch.isin(targets, torch.tensor(ignore))
    z, t = logits[keep].double(), targets[keep]
    p = z.softmax(-1)
    return {"confidence": p.max(-1).values.mean().item(), "entropy": -(p * p.log()).sum(-1).mean().item(),
            "accuracy": (z.argmax(-1) == t).double().mean().item()}, int(keep.sum())


def _record(tmp_path, logits, targets, name="r", **kw):
    model = nn.Linear(2, 2)
    rec = probes.attach(model, None, run_dir=tmp_path / name, every=1)
    rec.record_step(1.0, logits=logits, targets=targets, **kw)
    rec.record_eval(loss=1.0, logits=logits, targets=targets, **kw)
    rec.close()
    return runstore.load_run(tmp_path / name)


def test_ignored_positions_count_in_no_statistic(tmp_path):
    logits, targets = _batch()
    want, n = _plain(logits, targets)
    everything, _ = _plain(logits, targets, ignore=(-100,))
    assert abs(everything["confidence"] - want["confidence"]) > 1e-3  # so leaving PAD in would be seen
    run = _record(tmp_path, logits, targets, ignore_index=PAD)
    for split in ("train", "val"):
        for stat, value in want.items():
            assert run.series(tags.split_metric(split, stat))[1] == pytest.approx(value, rel=1e-5), (split, stat)
    assert run.meta["n_classes"] == V
    # The confidence histogram and the calibration table hold the labelled tokens only.
    assert run.histograms(tags.split_metric("val", "confidence")).counts[-1].sum() == n
    assert run.tables(tags.calibration("val"))[-1][1]["n"] == n

    # Whatever the model says at an ignored position changes nothing.
    noisy = logits.clone()
    noisy[targets == -100] = 50.0 * torch.randn(int((targets == -100).sum()), V)
    noisy[targets == PAD] = -3.0
    again = _record(tmp_path, noisy, targets, name="noisy", ignore_index=PAD)
    for stat in want:
        tag = tags.split_metric("train", stat)
        assert again.series(tag)[1] == pytest.approx(run.series(tag)[1], rel=1e-6)


def test_negative_targets_are_ignored_without_being_told():
    """-100 is cross_entropy's default ignore_index and no class is negative."""
    logits, targets = _batch()
    want, _ = _plain(logits, targets, ignore=(-100,))
    _, stats, _, _ = L.stats_numpy(logits, targets)
    assert stats.confidence == pytest.approx(want["confidence"], rel=1e-5)
    assert stats.accuracy == pytest.approx(want["accuracy"])


def test_device_and_cpu_implementations_agree_on_ignored_positions():
    """The torch path (any device) marks ignored positions instead of dropping them, so that no
    shape depends on data; its numbers, histogram and calibration sums are the numpy path's."""
    logits, targets = _batch(1)
    with np.errstate(all="ignore"):
        cconf, cstats, ccorrect, _ = L.stats_numpy(logits, targets, PAD)
    dconf, dstats, dcorrect, valid = L.stats_torch(logits, targets, PAD)
    assert valid is not None and int(valid.sum()) == len(cconf)
    assert np.allclose(cstats, dstats.numpy(), rtol=1e-5)
    assert np.array_equal(L.confidence_counts_torch(dconf, valid, 20).numpy(), fixed_numpy(cconf, 20, 0.0, 1.0))
    assert np.allclose(L.calibration_sums_torch(dconf, dcorrect, 15, valid).numpy(),
                       L.calibration_sums_numpy(cconf, ccorrect, 15), rtol=1e-5)


def test_every_position_ignored_gives_nan_not_zero():
    logits, targets = _batch()
    targets[:] = -100
    _, cstats, _, _ = L.stats_numpy(logits, targets)
    _, dstats, _, _ = L.stats_torch(logits, targets)
    assert all(math.isnan(v) for v in cstats)
    assert torch.isnan(dstats).all()


class TiedLM(nn.Module):
    """A tiny language model whose output layer shares the embedding's weight and which returns a
    dict with the loss first, as Hugging Face models do."""

    def __init__(self):
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(()))  # a parameter of its own: the root is watched
        self.emb = nn.Embedding(V, 8)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, V, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, x, labels):
        logits = self.head(torch.tanh(self.body(self.emb(x)))) * self.temperature
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return OrderedDict(loss=loss, logits=logits)


def test_model_outputs_and_tied_embeddings(tmp_path):
    torch.manual_seed(0)
    model = TiedLM()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    x = torch.randint(0, V, (2, 6))
    seen = []
    for kind in ("dict", "tuple", "reversed"):
        out = model(x, x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        given = {"dict": out, "tuple": (out["logits"], out["loss"]), "reversed": (out["loss"], out["logits"])}[kind]
        rec.record_step(out["loss"], logits=given, targets=x)
        seen.append(out["logits"].detach())
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    for step, logits in enumerate(seen, start=1):
        p = logits.softmax(-1)
        assert run.series("train/confidence")[step] == pytest.approx(p.max(-1).values.mean().item(), rel=1e-5)
        # The model's own output statistics are its logits', not the 0-d loss that comes first.
        assert run.series(tags.act("model", "mean"))[step] == pytest.approx(logits.mean().item(), rel=1e-5)

    # The shared weight: one gradient, one weight norm, one update ratio, under the first name.
    names = {t.split("/")[1] for t in run.scalar_tags() if t.startswith("grad/")}
    assert names == {"temperature", "emb.weight", "body.weight", "body.bias"}
    modules = {m["name"]: m for m in run.meta["model"]["modules"]}
    assert modules["head"]["params"] == 0 and modules["head"]["tied"] == ["emb.weight"]
    assert sum(m["params"] for m in modules.values()) == run.meta["model"]["n_params"] == 1 + V * 8 + 8 * 8 + 8


def test_bad_lm_arguments_are_named(tmp_path):
    rec = probes.attach(nn.Linear(2, 2), None, run_dir=tmp_path / "r")
    logits, targets = _batch()
    with pytest.raises(TypeError, match="ignore_index"):
        rec.record_step(1.0, logits=logits, targets=targets, ignore_index=0.5)
    with pytest.raises(ValueError, match="'logits' entry"):
        rec.record_step(1.0, logits={"loss": torch.tensor(1.0)}, targets=targets)
    with pytest.raises(ValueError, match=r"\(B, T\) for \(B, T, V\)"):
        rec.record_step(1.0, logits=logits, targets=targets[:, :-1])
    assert rec.step == 0  # nothing was recorded
    rec.close()


def test_char_gpt_example_records_language_model_statistics(tmp_path):
    """examples/char_gpt.py, a few steps: the answer characters are scored, the rest ignored."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import char_gpt
    from arithmetic_text import IGNORE, batch

    ids, labels = batch(random.Random(0), 4, digits=1)
    for row_ids, row_labels in zip(ids, labels):
        text = char_gpt.decode(row_ids).rstrip(".")
        scored = char_gpt.decode(row_labels[row_labels != IGNORE])
        assert scored == text[text.index("=") + 1:] and scored.endswith(";")
    run = runstore.load_run(char_gpt.train(tmp_path / "run", steps=3, every=1, quiet=True))
    assert run.last_step == 3 and run.meta["n_classes"] == char_gpt.VOCAB
    assert run.series("train/accuracy").between(0, 1).all() and run.has("val/confidence")
    assert run.has(tags.grad("tok.weight", "norm")) and not run.has(tags.grad("head.weight", "norm"))
