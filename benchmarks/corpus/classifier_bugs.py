"""A beginner's digit classifier (an MLP with nn.ReLU modules, Adam, cross-entropy, a shuffled
DataLoader-style loop, validation every 20 steps), and the bugs real-bug studies collect, one per
variant (DeepDiagnosis's 53 programs, AUTOTRAINER's models, Humbatova et al.'s taxonomy).

Variants: healthy; healthy_sgd (SGD with momentum); forgot_zero_grad (optimizer.zero_grad() left
out: gradients accumulate over every step); softmax_then_ce (the model ends in nn.Softmax and its
probabilities go into CrossEntropyLoss, which expects logits); class_sorted (no shuffling, the
training set sorted by label); unnormalized (raw 0-255 pixels); heavy_weight_decay (SGD with
weight decay 0.1, as if 1e-4 had been mistyped); frozen (requires_grad switched off for every layer
but the last, a fine-tuning recipe applied to a model trained from scratch); nan_batch (one corrupt
example with a NaN pixel at step 143); healthy_schedule (an ExponentialLR(0.9) stepped once per
epoch, as meant); schedule_per_batch (the same scheduler stepped after every batch: the learning rate
is 1/100 of its start by step 44 of 360); shuffled_labels (the training labels permuted independently
of the inputs, as when two lists are shuffled separately: nothing to learn but memorising).
"""

import torch
import torch.nn as nn

import probes
from common import digits, parse

VARIANTS = ("healthy", "healthy_sgd", "forgot_zero_grad", "softmax_then_ce", "class_sorted", "unnormalized",
            "heavy_weight_decay", "frozen", "nan_batch", "healthy_schedule", "schedule_per_batch", "shuffled_labels")
a = parse(VARIANTS)
v = a.variant
xt, yt, xv, yv = digits(normalize=v != "unnormalized")
xt, xv = xt.reshape(len(xt), -1), xv.reshape(len(xv), -1)
if v == "unnormalized":
    xt, xv = xt * 16, xv * 16  # 0-16 digit intensities as 0-255 pixel values
if v == "class_sorted":
    order = torch.argsort(yt, stable=True)
    xt, yt = xt[order], yt[order]
if v == "shuffled_labels":
    yt = yt[torch.randperm(len(yt))]  # the labels no longer belong to the images

layers = [nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)]
if v == "softmax_then_ce":
    layers.append(nn.Softmax(dim=1))
model = nn.Sequential(*layers)
if v == "frozen":
    for p in model.parameters():
        p.requires_grad = False
    for p in model[4].parameters():
        p.requires_grad = True
params = [p for p in model.parameters() if p.requires_grad]
if v in ("healthy_sgd", "heavy_weight_decay", "forgot_zero_grad", "unnormalized", "class_sorted"):
    wd = 0.1 if v == "heavy_weight_decay" else 0.0
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=wd)
else:
    opt = torch.optim.Adam(params, lr=1e-3)
sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9) if "schedule" in v else None
loss_fn = nn.CrossEntropyLoss()
epochs, bs = 8, 32
rec = probes.attach(model, opt, run_dir=a.run_dir, every=5,
                    hparams={"lr": opt.param_groups[0]["lr"], "batch_size": bs, "epochs": epochs})
step = 0
for epoch in range(epochs):
    perm = torch.arange(len(xt)) if v == "class_sorted" else torch.randperm(len(xt))
    for i in range(0, len(xt), bs):
        idx = perm[i:i + bs]
        x, y = xt[idx].clone(), yt[idx]
        step += 1
        if v == "nan_batch" and step == 143:
            x[0, 20] = float("nan")
        out = model(x)
        loss = loss_fn(out, y)
        if v != "forgot_zero_grad":
            opt.zero_grad()
        loss.backward()
        opt.step()
        rec.record_step(loss, logits=out, targets=y)
        if v == "schedule_per_batch":
            sched.step()  # meant once per epoch
        if step % 20 == 0:
            with torch.no_grad():
                vo = model(xv)
                rec.record_eval(loss=loss_fn(vo, yv), logits=vo, targets=yv)
    if v == "healthy_schedule":
        sched.step()
rec.close()
