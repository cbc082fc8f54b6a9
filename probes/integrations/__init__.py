"""Probes inside the training frameworks people use, each an optional extra:

    from probes.integrations.lightning import ProbesCallback   # pip install traindiag[lightning]
    trainer = lightning.Trainer(callbacks=[ProbesCallback(run_dir="runs/exp1")])

    from probes.integrations.hf import ProbesCallback          # pip install traindiag[hf]
    trainer = transformers.Trainer(..., callbacks=[ProbesCallback(run_dir="runs/exp1")])

Accelerate and plain DDP loops need no integration: probes.attach(accelerator.unwrap_model(model),
optimizer, run_dir=...) in the loop (docs/integrations.md). Nothing here is imported by `probes`
itself, so the frameworks stay optional.
"""
