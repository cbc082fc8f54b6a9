"""`python -m diagnostics advise RUN_DIR [--json] [--fail-on ...]` run as a user would, in a
subprocess: table and JSON output, exit codes for CI, colour only on a terminal, clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnostics import Finding
from test_diagnostics_synth import healthy, write_run

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    e = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run([sys.executable, "-m", "diagnostics", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=e, timeout=120)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ok = write_run(root / "healthy", healthy())
    spec = healthy()
    spec["loss"][150:] = np.nan
    spec["loss"][100:150] = spec["loss"][100] * np.exp(np.linspace(0, 10, 50))
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 0.4)
    bad = write_run(root / "diverged", spec)
    warn = healthy()
    warn["scalars"]["val/loss"] = (warn["scalars"]["val/loss"][0],
                                   np.array([1.5, 0.8, 0.5, 0.45, 0.5, 0.55, 0.62, 0.7, 0.75, 0.8]))
    warned = write_run(root / "overfit", warn)
    return {"healthy": ok, "diverged": bad, "overfit": warned}


def test_healthy_run_prints_no_findings_and_exits_0(runs):
    out = cli("advise", runs["healthy"], "--fail-on", "warning")
    assert out.returncode == 0, out.stderr
    assert "No findings" in out.stdout and "\033[" not in out.stdout


def test_table_names_rules_layers_steps_and_fix(runs):
    out = cli("advise", runs["diverged"])
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    header = next(i for i, l in enumerate(lines) if l.startswith("SEVERITY"))
    first_row = lines[header + 1].split()
    assert first_row[:2] == ["CRITICAL", "lr_too_high"]
    assert "Config change: lr=0.005" in out.stdout and "Try: Divide the learning rate" in out.stdout
    assert "nan_loss" in out.stdout and "\033[" not in out.stdout  # not a terminal: no colour


def test_fail_on_sets_the_exit_status(runs):
    assert cli("advise", runs["diverged"], "--fail-on", "critical").returncode == 1
    assert cli("advise", runs["overfit"], "--fail-on", "warning").returncode == 1
    assert cli("advise", runs["overfit"], "--fail-on", "critical").returncode == 0
    assert cli("advise", runs["overfit"]).returncode == 0


def test_json_output_is_a_list_of_findings(runs):
    out = cli("advise", runs["diverged"], "--json")
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert isinstance(data, list) and data[0]["rule"] == "lr_too_high"
    assert set(data[0]) == {f.name for f in dataclasses.fields(Finding)}
    assert data[0]["fix"] == {"lr": 0.005} and isinstance(data[0]["steps"], list)


def test_unreadable_path_exits_2_without_traceback(tmp_path):
    out = cli("advise", tmp_path / "missing")
    assert out.returncode == 2
    assert "cannot read" in out.stderr and "does not exist" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "empty").mkdir()
    out = cli("advise", tmp_path / "empty", "--json")
    assert out.returncode == 2 and "empty" in out.stderr and out.stdout == ""


def test_bad_threshold_override_exits_2(runs):
    out = cli("advise", runs["healthy"], "--set", "dead_warn=lots")
    assert out.returncode == 2 and "dead_warn" in out.stderr
    out = cli("advise", runs["overfit"], "--set", "overfit_val_rise=5", "--set", "overfit_info_rise=5",
              "--fail-on", "warning")
    assert out.returncode == 0  # thresholds raised far enough: no warning left


def test_usage_errors_exit_2():
    assert cli("advise").returncode == 2
    assert cli("advise", ".", "--fail-on", "info").returncode == 2


def test_tensorboard_directory(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    for s in range(1, 200):
        w.add_scalar("train_loss", float("nan") if s > 150 else 2.0 / s ** 0.3, s)
    w.close()
    out = cli("advise", tmp_path / "tb", "--json")
    assert out.returncode == 0, out.stderr
    assert "nan_loss" in [f["rule"] for f in json.loads(out.stdout)]


def _run_in_terminal(args, env):
    """Run the CLI with stdout attached to a pseudo-terminal; returns what it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "diagnostics", *map(str, args)], cwd=ROOT, stdout=slave,
                            stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_colour_on_a_terminal_unless_no_color(runs):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _run_in_terminal(["advise", runs["diverged"]], env)
    assert "\033[1;31m" in coloured and "lr_too_high" in coloured
    plain = _run_in_terminal(["advise", runs["diverged"]], {**env, "NO_COLOR": "1"})
    assert "\033[" not in plain and "lr_too_high" in plain


def test_verdicts_option_prints_the_tables_the_findings_read(runs):
    out = cli("advise", runs["diverged"], "--verdicts")
    assert out.returncode == 0, out.stderr
    text = out.stdout.split("Verdicts on update_ratio", 1)[1]
    # The three layer weights read "too large" (0.4 per step), the ones lr_too_high names.
    rows = [l.split() for l in text.splitlines() if l.startswith("    net.")][:3]
    assert [(r[0], r[1], " ".join(r[4:6])) for r in rows] == [(f"net.{i}.weight", "0.4", "too large") for i in (0, 2, 4)]
    assert "Verdicts on" not in cli("advise", runs["diverged"]).stdout


def test_run_without_numbers_is_unreadable_exit_2(tmp_path):
    import runstore

    w = runstore.RunWriter(tmp_path / "empty", meta={"name": "empty"})
    w.close("finished")
    r = cli("advise", tmp_path / "empty")
    assert r.returncode == 2 and "no recorded numbers" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_crash_in_the_rules_exits_3_not_1(runs, monkeypatch, capsys):
    # In-process, so the rules can be broken on purpose: a bug must not look like "findings" (1).
    from diagnostics import cli as cli_mod

    def broken(*a, **k):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(cli_mod, "judge", broken)
    assert cli_mod.main(["advise", str(runs["healthy"]), "--fail-on", "warning"]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "planted" in err and "Traceback" not in err


def test_console_script_takes_the_run_directly(runs, capsys):
    from diagnostics import cli as cli_mod

    assert cli_mod.advise_script([str(runs["healthy"])]) == 0
    with pytest.raises(SystemExit):
        cli_mod.advise_script(["--help"])
    out = capsys.readouterr().out
    assert "usage: traindiag-advise" in out and "python -m diagnostics" not in out
