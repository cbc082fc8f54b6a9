"""What a run trains for, read from what it recorded, and what that means for a loss level.

A classifier's cross-entropy can reach 0 (or the entropy of label-smoothed targets); a language
model's cannot: text has an entropy of its own, and a converged character-level model sits around
half of ln(vocabulary). A VAE's or a regression's loss has a floor nobody recorded, and a GAN's two
losses are not minimised at all. So the level rules (underfitting, a plateau, too little progress)
judge a level against a floor only when the floor is known: for classification, or when the user
declared one (`probes.attach(..., meta={"task": "language_model", "loss_floor": 1.2})`); otherwise
they judge how far the loss came and where the validation loss is heading.

The task is, in this order: declared (run.json `task`, or hparams `task`); adversarial when a
second loss of a generator/discriminator pair was recorded or the model is one of the pair; a
language model when the model embeds the same vocabulary it predicts (an Embedding whose size is a
multiple of the class count, 20 classes or more); classification when a class count is known or
accuracy / confidence were recorded; otherwise a loss without classes (regression, reconstruction,
a VAE's ELBO).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from runstore import tags as T

CLASSIFICATION = "classification"
LANGUAGE_MODEL = "language_model"
REGRESSION = "regression"        # any loss without classes: MSE, reconstruction, an ELBO
ADVERSARIAL = "adversarial"      # a GAN, or any setup whose losses compete
TASKS = (CLASSIFICATION, LANGUAGE_MODEL, REGRESSION, ADVERSARIAL)

# What users write for `task=`; anything else is ignored (and said so by the task finding).
ALIASES = {
    "classification": CLASSIFICATION, "classifier": CLASSIFICATION, "classify": CLASSIFICATION,
    "language_model": LANGUAGE_MODEL, "language-model": LANGUAGE_MODEL, "lm": LANGUAGE_MODEL,
    "causal_lm": LANGUAGE_MODEL, "seq2seq": LANGUAGE_MODEL, "text_generation": LANGUAGE_MODEL,
    "regression": REGRESSION, "reconstruction": REGRESSION, "autoencoder": REGRESSION, "vae": REGRESSION,
    "generative": REGRESSION, "forecasting": REGRESSION,
    "adversarial": ADVERSARIAL, "gan": ADVERSARIAL,
}
NAMES = {CLASSIFICATION: "classification", LANGUAGE_MODEL: "language model",
         REGRESSION: "a loss without classes (regression, reconstruction, VAE)", ADVERSARIAL: "adversarial (GAN)"}

# A recorded train scalar that is the other loss of a generator/discriminator pair: Loss_D, loss_G,
# errD, d_loss, gen_loss, disc_loss, loss_critic, adv_loss ...
_PAIR = r"(d|g|disc|gen|discriminator|generator|critic|adv|adversarial)"
ADVERSARIAL_LOSS = re.compile(rf"^(?:(?:loss|err|error)_?{_PAIR}|{_PAIR}_?(?:loss|err|error))$", re.IGNORECASE)
ADVERSARIAL_MODEL = re.compile(r"generator|discriminator|critic|gan", re.IGNORECASE)
# Output vocabularies of language models are this large or larger (a character set and up).
LM_MIN_VOCAB = 20
LM_MAX_EMBED_DIM = 8192


@dataclass(frozen=True)
class Task:
    kind: str                      # one of TASKS
    how: str                       # how it was known, in words (for the task finding)
    declared: bool = False
    floor: float | None = None     # a declared lowest reachable loss
    other_losses: tuple[str, ...] = ()   # the competing losses of an adversarial run (tags)
    ignored_declaration: str | None = None  # a `task` value that is not one of ALIASES

    @property
    def name(self) -> str:
        return NAMES[self.kind]

    @property
    def minimised(self) -> bool:
        """Whether the recorded train loss is a loss the run minimises (not one of a GAN's)."""
        return self.kind != ADVERSARIAL


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _embeds_vocabulary(modules: list, n_classes: int) -> str | None:
    """The name of an Embedding whose table can be n_classes x d (a model that reads and predicts
    the same vocabulary), else None."""
    for m in modules:
        if not isinstance(m, dict) or m.get("type") != "Embedding":
            continue
        params = m.get("params")
        if isinstance(params, int) and params > 0 and params % n_classes == 0 \
                and params // n_classes <= LM_MAX_EMBED_DIM:
            return str(m.get("name"))
    return None


def recognise(meta: dict, hparams: dict, scalar_tags: list[str], n_classes: int | None) -> Task:
    """The task of a run from its metadata and the tags it recorded (module docstring)."""
    declared = meta.get("task", hparams.get("task"))
    floor = _number(meta.get("loss_floor", hparams.get("loss_floor")))
    ignored = None
    if isinstance(declared, str):
        kind = ALIASES.get(declared.strip().lower())
        if kind is not None:
            others = _other_losses(scalar_tags) if kind == ADVERSARIAL else ()
            return Task(kind, f"declared as task={declared.strip()!r}", True, floor, others)
        ignored = declared[:40]
    others = _other_losses(scalar_tags)
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    model_class = str(model.get("class") or "")
    if others:
        return Task(ADVERSARIAL, f"a second, competing loss was recorded ({', '.join(others)})", False, floor, others,
                    ignored)
    if ADVERSARIAL_MODEL.search(model_class) and n_classes is None:
        return Task(ADVERSARIAL, f"the model is a {model_class}", False, floor, (), ignored)
    if n_classes is not None and n_classes >= LM_MIN_VOCAB:
        emb = _embeds_vocabulary(model.get("modules") or [], n_classes)
        if emb is not None:
            return Task(LANGUAGE_MODEL, f"the model embeds ({emb}) and predicts the same {n_classes} symbols", False,
                        floor, (), ignored)
    if n_classes is not None:
        return Task(CLASSIFICATION, f"{n_classes} classes", False, floor, (), ignored)
    predictions = [t for t in scalar_tags if T.parse(t)[1] in ("accuracy", "confidence")]
    if predictions:
        return Task(CLASSIFICATION, f"class predictions were recorded ({predictions[0]})", False, floor, (), ignored)
    return Task(REGRESSION, "no class count and no class predictions were recorded (no logits)", False, floor, (),
                ignored)


def _other_losses(scalar_tags: list[str]) -> tuple[str, ...]:
    out = []
    for tag in scalar_tags:
        fam, name, _ = T.parse(tag)
        if fam == "train" and name and ADVERSARIAL_LOSS.match(name):
            out.append(tag)
    return tuple(sorted(out))
