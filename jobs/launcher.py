"""The one way to start a playground training process: `python -m playground train` on a run
directory, with its Config saved in the directory (schema.CONFIG_FILE) and its output going to
the directory's log (schema.LOG_FILE).

Torch-free: the child imports torch, the caller never does. The child stops cleanly on SIGTERM
(the run ends as "stopped" at its next step and keeps what it recorded).
"""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from pathlib import Path

from playground.config import Config, ConfigError
from runstore import schema

# The folder holding the playground package: the child must import the same playground code as
# the caller, wherever it is started from.
PLAYGROUND_ROOT = Path(__file__).resolve().parent.parent


class LaunchError(RuntimeError):
    """The training process could not be started; the message says why in the user's terms."""


def argument_text(field: str, value) -> str:
    """`value` (None counts as "") as text that can travel in the training process's arguments.
    LaunchError, naming the field, for a NUL byte (no argument can hold one), another control
    character (tabs and line breaks excepted) or text that cannot be encoded."""
    text = "" if value is None else str(value)
    for ch in text:
        if ch in "\t\n\r":
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            raise LaunchError(f"the {field} must not contain control characters such as {ascii(ch)} "
                              f"({'a NUL byte' if ch == chr(0) else 'unprintable'}); remove it and try again.")
        if category == "Cs":
            raise LaunchError(f"the {field} holds a broken character ({ascii(ch)}); remove it and try again.")
    return text


def child_env(*, threads: int | None = None) -> dict:
    """The environment of a training (or device-probe) process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLAYGROUND_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                                  if p])
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach train.log as they are written
    if threads is not None and "OMP_NUM_THREADS" not in env:
        # Without this each job starts one thread per core, and parallel jobs fight over them.
        env["OMP_NUM_THREADS"] = str(max(1, int(threads)))
    return env


def command(run_dir: str | os.PathLike, *, name: str = "", description: str = "", parent: str | None = None,
            python: str | None = None) -> list[str]:
    """The argument list (never a shell string) that trains the Config saved in `run_dir` into it.
    "--opt=value" throughout, so a value starting with "-" stays a value."""
    run_dir = Path(run_dir)
    argv = [python or sys.executable, "-m", "playground", "train", f"--config={run_dir / schema.CONFIG_FILE}",
            f"--run-dir={run_dir}", f"--name={name}", f"--description={description}"]
    if parent:
        argv.append(f"--parent={parent}")
    return argv


def launch(config: Config, run_dir: str | os.PathLike, *, name: str = "", description: str = "",
           parent: str | None = None, python: str | None = None, threads: int | None = None) -> subprocess.Popen:
    """Save `config` into `run_dir` (created if needed) and start training it there; returns the
    process at once.

    The process gets its own session (a Ctrl-C meant for the caller does not reach it, and a forced
    stop can end its whole process group: `os.killpg(proc.pid, SIGKILL)`). Raises ConfigError for an
    invalid config and LaunchError for a name, description or parent no argument can hold (nothing is
    created), and LaunchError when the process cannot start.
    """
    if not isinstance(config, Config):
        raise ConfigError(f"expected a playground Config, got {type(config).__name__}.")
    config = config.validate(check_device=False)  # the child checks the device; the caller stays torch-free
    for field_name, text in (("name", name), ("description", description), ("parent", parent)):
        argument_text(field_name, text)  # before the folder exists
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / schema.CONFIG_FILE)
    argv = command(run_dir, name=name, description=description, parent=parent, python=python)
    log = open(run_dir / schema.LOG_FILE, "ab")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(run_dir), env=child_env(threads=threads), close_fds=True,
                                start_new_session=True)
    except OSError as e:
        raise LaunchError(f"could not start the training process ({e.strerror or e}).") from None
    finally:
        log.close()
