"""How the app copes with a runs folder holding many runs (1,000 by default).

    python benchmarks/many_runs.py                 # 1,000 runs copied from sample_runs/dying_relu
    python benchmarks/many_runs.py --runs 600 --sample sample_runs/baseline

The runs are copies of one recorded run (its run.db as it is, its run.json with a new name, id,
creation time and learning rate), written once under --out and reused. Each measurement is one
AppTest rerun of app.py in this process (script time, no browser), the median of --repeat tries
where it can be repeated:

  runs page first   a new session opening the Runs page (what the first visitor waits for)
  while reading     a rerun of the Runs page while the runs' numbers are still being read (by a
                    background thread; see dashboard/summary.py)
  read all          (once) from opening the Runs page until every run's numbers are in the table
  runs page again   a rerun with nothing changed, every run read (every later click pays this)
  filter            typing a filter on the Runs page
  sort              changing the sort order
  open run          switching to the Overview page of one run
  pick in sidebar   picking another run in the sidebar's run menu while on the Overview

Later tries run in the same process, so they find the process-wide caches warm (what a second
visitor of a running app gets); the first try of "runs page first" is reported on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runstore import read_meta, schema  # noqa: E402


def make_runs(out: Path, sample: Path, n: int) -> list[Path]:
    """n copies of `sample` under `out` (kept between invocations when they match)."""
    stamp = out / ".many_runs.json"
    want = json.dumps({"sample": str(sample.resolve()), "n": n})
    dirs = [out / f"run_{i:04d}" for i in range(n)]
    if stamp.exists() and stamp.read_text() == want:
        return dirs
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    meta = read_meta(sample)
    base_lr = (meta.get("hparams") or {}).get("lr", 0.1)
    for i, d in enumerate(dirs):
        d.mkdir()
        shutil.copyfile(sample / schema.DB_FILE, d / schema.DB_FILE)
        m = dict(meta, name=f"{meta.get('name', 'run')}-{i:04d}", run_id=f"{i:032x}",
                 created=meta.get("created", 1.7e9) + 60 * i,
                 hparams=dict(meta.get("hparams") or {}, lr=base_lr * (1 + (i % 7) / 10)))
        (d / schema.META_FILE).write_text(json.dumps(m))
    stamp.write_text(want)
    return dirs


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--sample", type=Path, default=ROOT / "sample_runs" / "dying_relu")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "traindiag-many-runs")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)

    from streamlit.testing.v1 import AppTest  # noqa: PLC0415 - only needed to measure

    t = time.perf_counter()
    dirs = make_runs(a.out, a.sample, a.runs)
    print(f"{len(dirs)} runs in {a.out} (ready in {time.perf_counter() - t:.1f} s)")

    sys.argv = ["app.py", "--no-samples", "--runs-dir", str(a.out)]
    results: dict[str, list[float]] = {}

    def measure(name: str, fn) -> None:
        results.setdefault(name, []).append(timed(fn))

    def reading(at: AppTest) -> bool:
        return any("still reading" in c.value for c in at.caption)

    for attempt in range(a.repeat):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        start = time.perf_counter()
        measure("runs page first", at.run)
        assert not at.exception, [e.value for e in at.exception]
        if reading(at):
            measure("while reading", at.run)
            while reading(at):
                time.sleep(2.0)  # the table's own refresh while runs are read (views/runs.py)
                at.run()
            print(f"read all: {time.perf_counter() - start:.1f} s")
        measure("runs page again", at.run)
        measure("filter", at.text_input(key="runs_filter").set_value(f"-{attempt:03d}").run)
        measure("sort", at.selectbox(key="runs_sort").set_value("name" if attempt % 2 == 0 else "newest first").run)
        at.session_state["current_run"] = os.path.abspath(dirs[attempt])
        measure("open run", at.switch_page("dashboard/pages/overview.py").run)
        assert not at.exception, [e.value for e in at.exception]
        measure("pick in sidebar", at.sidebar.selectbox(key="run").set_value(os.path.abspath(dirs[-1 - attempt])).run)
        assert not at.exception, [e.value for e in at.exception]

    width = max(len(k) for k in results)
    for name, values in results.items():
        extra = f"  (first {values[0]:.2f} s)" if name == "runs page first" and len(values) > 1 else ""
        print(f"{name:<{width}}  {statistics.median(values):7.2f} s median of {len(values)}{extra}")


if __name__ == "__main__":
    main()
