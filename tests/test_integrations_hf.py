"""probes.integrations.hf.ProbesCallback in real, tiny Hugging Face Trainer runs on the CPU (a
GPT-2 built from a config, no download): per-step loss, gradients and per-token statistics equal
what plain torch computes at the same points (gradient accumulation, clipping and bf16 mixed
precision included), tied embeddings are recorded once, evaluation is recorded, an injected
learning-rate fault is diagnosed, and a loss the callback cannot see fails the run, not training."""

import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
pytest.importorskip("accelerate", reason="the hf extra is not installed")

import diagnostics  # noqa: E402
import runstore  # noqa: E402
from probes.integrations.hf import ProbesCallback  # noqa: E402
from runstore import schema, tags  # noqa: E402

BLOW_UP_RULES = {"lr_too_high", "nan_loss", "exploding_gradients"}
BF16 = torch.backends.mkldnn.is_available()  # CPU autocast to bfloat16
VOCAB, LENGTH = 32, 12
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Counting(torch.utils.data.Dataset):
    """Sequences that count up from a random token (a pattern a tiny model learns in a few steps).
    The first 3 labels are -100 (a prompt) and some sequences end in padding, labelled -100 too."""

    def __init__(self, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.ids = (torch.randint(0, VOCAB, (n, 1), generator=g) + torch.arange(LENGTH)) % VOCAB
        self.labels = self.ids.clone()
        self.labels[:, :3] = -100
        self.labels[::3, -4:] = -100

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def _model():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config)


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, report_to=[], use_cpu=True,
                save_strategy="no", disable_tqdm=True, lr_scheduler_type="constant", dataloader_num_workers=0)
    return transformers.TrainingArguments(**{**base, **kw})


class Spy(transformers.TrainerCallback):
    """Plain torch at the points the probes read: gradient norms just before optimizer.step()
    (after accumulation and clipping), and the logits and labels of the first training batch."""

    def __init__(self, model):
        self.grads, self.first = [], None
        model.register_forward_hook(self._forward, with_kwargs=True)

    def _forward(self, module, args, kwargs, output):
        if self.first is None and module.training:
            self.first = (output.logits.detach().float(), kwargs["labels"])

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.norm().item() for n, p in model.named_parameters() if p.grad is not None})


def _token_stats(logits, labels):
    """Confidence, entropy and accuracy of next-token predictions over the labelled tokens only."""
    z, t = logits[:, :-1].double(), labels[:, 1:]
    keep = t != -100
    p = z.softmax(-1)[keep]
    return {"confidence": p.max(-1).values.mean().item(), "entropy": -(p * p.log()).sum(-1).mean().item(),
            "accuracy": (z.argmax(-1)[keep] == t[keep]).double().mean().item()}


def test_recorded_values_equal_plain_torch(tmp_path):
    model = _model()
    spy = Spy(model)
    args = _args(tmp_path, gradient_accumulation_steps=2, max_steps=4, learning_rate=3e-3, logging_steps=1,
                 max_grad_norm=0.5, bf16=BF16, eval_strategy="steps", eval_steps=4)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Counting(64), eval_dataset=Counting(16, seed=1),
                                   callbacks=[spy, ProbesCallback(tmp_path / "run", every=1)])
    trainer.train()
    run = runstore.load_run(tmp_path / "run")
    assert run.status == schema.FINISHED and run.last_step == 4 and run.meta["total_steps"] == 4
    assert run.meta["hparams"]["gradient_accumulation_steps"] == 2 and run.meta["n_classes"] == VOCAB
    assert run.meta["task"] == "language_model"

    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logs] == [1, 2, 3, 4]
    for h in logs:  # the Trainer's own loss (over both accumulated batches) and pre-clip norm
        assert run.series(tags.TRAIN_LOSS)[h["step"]] == pytest.approx(h["loss"], rel=1e-6)
        assert run.series("train/grad_norm")[h["step"]] == pytest.approx(h["grad_norm"], rel=1e-6)
    assert max(h["grad_norm"] for h in logs) > 0.5  # so clipping changed what the optimizer applied
    for step, grads in enumerate(spy.grads, start=1):
        for name, norm in grads.items():
            assert run.series(tags.grad(name, "norm"))[step] == pytest.approx(norm, rel=1e-5), (step, name)

    # GPT-2 ties its output layer to the token embedding: one parameter, recorded once.
    assert run.has(tags.grad("transformer.wte.weight", "norm")) and not run.has(tags.grad("lm_head.weight", "norm"))
    head = next(m for m in run.meta["model"]["modules"] if m["name"] == "lm_head")
    assert head["params"] == 0 and head["tied"] == ["transformer.wte.weight"]
    assert sum(m["params"] for m in run.meta["model"]["modules"]) == run.meta["model"]["n_params"]

    # Per-token statistics of the first batch: shifted as GPT-2's loss shifts, -100 left out.
    for stat, want in _token_stats(*spy.first).items():
        assert run.series(tags.split_metric("train", stat))[1] == pytest.approx(want, rel=1e-4), stat

    # The evaluation at step 4, on the final weights, as plain torch computes it.
    ev = Counting(16, seed=1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        logits = model(input_ids=ev.ids).logits.float()
    assert run.series("val/loss")[4] == pytest.approx(trainer.state.log_history[-2]["eval_loss"], rel=1e-6)
    for stat, want in _token_stats(logits, ev.labels).items():
        assert run.series(tags.split_metric("val", stat))[4] == pytest.approx(want, rel=1e-3), stat
    assert run.tables(tags.calibration("val"))[-1][1]["n"] == int((ev.labels[:, 1:] != -100).sum())


def _fit_sgd(tmp_path, name, lr):
    args = _args(tmp_path / name, max_steps=24, learning_rate=lr, optim="sgd", logging_steps=100,
                 per_device_train_batch_size=8)
    transformers.Trainer(model=_model(), args=args, train_dataset=Counting(192),
                         callbacks=[ProbesCallback(tmp_path / name / "run", every=4)]).train()
    return {f.rule for f in diagnostics.advise(runstore.load_run(tmp_path / name / "run")) if f.severity != "info"}


def test_lr_times_100_is_diagnosed(tmp_path):
    healthy, faulty = _fit_sgd(tmp_path, "ok", 0.3), _fit_sgd(tmp_path, "bad", 30.0)
    assert not healthy & BLOW_UP_RULES, healthy
    assert faulty & BLOW_UP_RULES, faulty


def test_logging_every_step_adds_no_flush(tmp_path, monkeypatch):
    """The Trainer's grad_norm joins the record of the step it belongs to, instead of a record of
    its own that flushes (as evaluations do): at logging_steps=1 that was one flush per step."""
    import probes.recorder

    flushes = []
    flush = probes.recorder.Recorder._flush
    monkeypatch.setattr(probes.recorder.Recorder, "_flush", lambda self: (flushes.append(self.step), flush(self))[1])
    args = _args(tmp_path, max_steps=12, learning_rate=1e-3, logging_steps=1)
    transformers.Trainer(model=_model(), args=args, train_dataset=Counting(48),
                         callbacks=[ProbesCallback(tmp_path / "run", flush_secs=3600)]).train()
    run = runstore.load_run(tmp_path / "run")
    assert list(run.series("train/grad_norm").index) == list(range(1, 13)) and run.last_step == 12
    # the one at close (the time-based flush is pushed out of reach: a slow machine must not add one)
    assert flushes == [12]


def test_the_examples_blow_up_is_diagnosed(tmp_path):
    """examples/hf_trainer.py --lr 0.3, as a user runs it: Adam at 100x its default. Adam's first
    update moves every element by about the learning rate, 15-30x the norm of GPT-2's small init
    weights; the loss spikes and recovers, and against the weights that step inflated later updates
    read ordinary ratios, so the Updates table (a 90th percentile over 15 records) reads "in range".
    The step that rewrote the weights before the blow-up is the evidence."""
    sys.path.insert(0, str(EXAMPLES))
    import hf_trainer

    hf_trainer.main(["--lr", "0.3", "--run-dir", str(tmp_path / "run")])
    findings = diagnostics.advise(runstore.load_run(tmp_path / "run"))
    first = next(f for f in findings if f.rank >= 1)
    assert first.rule == "lr_too_high", [(f.rule, f.severity) for f in findings]
    assert first.evidence["rewrite_ratio_step"] == 1 and first.evidence["rewrite_ratio"] > 10


def test_loss_computed_outside_the_model_fails_the_run_not_training(tmp_path):
    """With compute_loss_func the model returns no loss: the run says why it stopped, training
    finishes."""
    def loss_func(outputs, labels, num_items_in_batch=None):
        return torch.nn.functional.cross_entropy(outputs.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())

    args = _args(tmp_path, max_steps=3, learning_rate=1e-3)
    trainer = transformers.Trainer(model=_model(), args=args, train_dataset=Counting(16), compute_loss_func=loss_func,
                                   callbacks=[ProbesCallback(tmp_path / "run")])
    with pytest.warns(RuntimeWarning, match="returned no loss"):
        trainer.train()
    assert trainer.state.global_step == 3
    run = runstore.load_run(tmp_path / "run")
    assert run.status == schema.FAILED and "compute_loss_func" in run.meta["error"]
    assert run.last_step == 0  # nothing made up


def test_bad_options_fail_when_the_callback_is_made(tmp_path):
    with pytest.raises(TypeError, match="evry"):
        ProbesCallback(tmp_path / "r", evry=10)
    with pytest.raises(TypeError, match="ignore_index"):
        ProbesCallback(tmp_path / "r", ignore_index="pad")
