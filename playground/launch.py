"""Start a playground training in a separate process (what the dashboard's Train page does).

Torch-free: the child process imports torch, the caller never does. The child writes its
progress and any error to <run_dir>/train.log; SIGTERM (proc.terminate()) stops it cleanly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runstore import schema

from .config import FIELDS, Config

_REPO = Path(__file__).resolve().parents[1]


def command(config: Config, run_dir: str | os.PathLike, *, name: str | None = None, description: str | None = None,
            parent: str | None = None, overwrite: bool = False, python: str | None = None) -> list[str]:
    """The `python -m playground train ...` command line that trains `config` into `run_dir`."""
    config.validate(check_device=False)  # the child checks the device; this process stays torch-free
    cmd = [python or sys.executable, "-m", "playground", "train", "--run-dir", os.fspath(run_dir)]
    for field in FIELDS:
        value = getattr(config, field)
        text = ("true" if value else "false") if isinstance(value, bool) else repr(value) \
            if isinstance(value, float) else str(value)
        cmd += [f"--{field.replace('_', '-')}", text]
    for flag, value in (("--name", name), ("--description", description), ("--parent", parent)):
        if value is not None:
            cmd += [flag, value]
    if overwrite:
        cmd.append("--overwrite")
    return cmd


def start_training(config: Config, run_dir: str | os.PathLike, **options) -> subprocess.Popen:
    """Start training `config` into `run_dir` in a child process and return it at once.

    Options as for command(). Output goes to <run_dir>/train.log. Stop it with proc.terminate():
    the run is then marked "stopped" and keeps what it recorded.
    """
    cmd = command(config, run_dir, **options)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The child must find this package even when the caller's working directory is elsewhere.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH")) if p)
    with open(run_dir / schema.LOG_FILE, "ab") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=str(_REPO))
