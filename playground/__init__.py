"""Built-in training workloads (digits, spirals, a sequence task), recorded through probes.

    from playground import Config, train
    status = train(Config(workload="digits", lr=0.01), "runs/digits-lr0.01")

Importing this package (or playground.config) does not import torch; `train` does, when called.
"""

from __future__ import annotations

from .config import FIELDS, Config, ConfigError, FieldSpec

__all__ = ["Config", "ConfigError", "FIELDS", "FieldSpec", "train"]


def train(config: Config, run_dir, **options) -> str:
    """Train `config` into `run_dir` and return the final status; see playground.loop.train."""
    from .loop import train as _train  # deferred: keeps `import playground` torch-free

    return _train(config, run_dir, **options)
