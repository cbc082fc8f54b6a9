"""The app against hostile run folders, driven through streamlit.testing's AppTest.

1. Broken run folders (run.json that is not an object, fields of the wrong type, out-of-range
   numbers, deeply nested JSON, run.json that is a folder, a symlink loop, a FIFO or /dev/zero):
   no page crashes or hangs, every other run keeps working, and each bad run says why.
2. Markup planted in every run.json text field and in layer names: no page renders it as
   Markdown or HTML (it is escaped in Markdown, plain in tables, entity-escaped in Plotly).
3. Many runs: the Runs page reads run.json summaries; run.db is read once per change of a run
   (in the background when there are many) and never kept in memory for runs that are not open.
4. Exposure: the app listens on localhost only, and says so when started otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from dashboard import loading, navigation
from dashboard import summary as summary_mod
from dashboard.discovery import find_runs
from dashboard.loading import HandlePool
from dashboard.settings import exposure_note
from dashboard.synthetic import SyntheticSpec, write_synthetic_run
from dashboard.ui import cache
from dashboard.ui.guard import NOT_SHOWN
from runstore import Batch, RunWriter, load_run, schema, tags

ROOT = Path(__file__).resolve().parent.parent
RUN_PAGES = tuple(p.key for p in navigation.PAGES if p.section == navigation.RUN_SECTION)
ALL_PAGES = tuple(p.key for p in navigation.PAGES)  # every page, those added later too


def small_run(path: Path, **kw):
    spec = dict(steps=100, layers=3, val_every=50, flush_steps=50, every=10)
    spec.update(kw)
    return write_synthetic_run(path, SyntheticSpec(**spec))


@pytest.fixture
def make_app(monkeypatch):
    def make(*folders) -> AppTest:
        argv = ["app.py", "--no-samples", "--refresh", "0.5"]
        for f in folders:
            argv += ["--runs-dir", str(f)]
        monkeypatch.setattr(sys, "argv", argv)
        return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    return make


def visit(at: AppTest, page: str, run: str | None = None) -> AppTest:
    if not at._tree:
        at.run()
    if run is not None:
        at.session_state["current_run"] = run
    at.switch_page(f"dashboard/pages/{page}.py").run()
    assert not at.exception, (page, run, [e.value for e in at.exception])
    assert not [e.value for e in at.error if NOT_SHOWN in e.value], (page, run)  # ui/guard caught a failure
    return at


def runs_table(at: AppTest):
    return next(d.value for d in at.get("dataframe") if "path" in d.value.columns).set_index("path")


# -- 1. broken run folders -----------------------------------------------------------------------------
NOT_OBJECTS = {"json_list": "[]", "json_null": "null", "json_number": "1", "json_string": '"hello"',
               "json_nested": "[" * 200_000 + "]" * 200_000}
WRONG_TYPES = {
    "status_list": {"name": "status-list", "status": ["x"]},
    "hparams_text": {"name": "hparams-text", "status": "finished", "hparams": "lr=0.1"},
    "created_huge": {"name": "created-huge", "status": "finished", "created": 1e20},
    "ended_huge": {"name": "ended-huge", "status": "finished", "ended": 1e300, "created": -1e300},
    "pid_huge": {"name": "pid-huge", "status": "running", "pid": 2 ** 70, "host": socket.gethostname()},
    "fields_objects": {"name": {"a": 1}, "status": "failed", "workload": ["w"], "description": 5,
                       "error": {"x": 1}, "model": "big", "optimizer": [1], "parent": 7},
}
SPECIAL = ("meta_is_folder", "meta_symlink_loop", "meta_fifo", "meta_dev_zero", "no_exec_bit")
# Folders whose run.json cannot be read at all: the reason must be shown (the numbers in run.db may
# still be shown).
META_UNREADABLE = set(NOT_OBJECTS) | {"meta_is_folder", "meta_symlink_loop", "meta_fifo", "meta_dev_zero"}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-runs")
    small_run(d / "good", name="good", fault="dead_relu", lr=0.5, seed=1)
    db = d / "good" / schema.DB_FILE
    for name, text in NOT_OBJECTS.items():
        (d / name).mkdir()
        (d / name / schema.META_FILE).write_text(text)
        shutil.copyfile(db, d / name / schema.DB_FILE)  # numbers that load: only run.json is bad
    for name, meta in WRONG_TYPES.items():
        (d / name).mkdir()
        (d / name / schema.META_FILE).write_text(json.dumps(meta))
        shutil.copyfile(db, d / name / schema.DB_FILE)
    for name in SPECIAL:
        (d / name).mkdir()
        shutil.copyfile(db, d / name / schema.DB_FILE)
    (d / "meta_is_folder" / schema.META_FILE).mkdir()
    os.symlink(schema.META_FILE, d / "meta_symlink_loop" / schema.META_FILE)
    os.mkfifo(d / "meta_fifo" / schema.META_FILE)
    os.symlink("/dev/zero", d / "meta_dev_zero" / schema.META_FILE)
    shutil.copyfile(d / "good" / schema.META_FILE, d / "no_exec_bit" / schema.META_FILE)
    os.chmod(d / "no_exec_bit", 0o600)  # unreadable, except to root with CAP_DAC_OVERRIDE (e.g. CI containers)
    yield d
    os.chmod(d / "no_exec_bit", 0o700)
    try:  # release a reader left blocked on the FIFO, so a failing run cannot hang the test session
        os.close(os.open(d / "meta_fifo" / schema.META_FILE, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


def test_bad_run_folders_are_listed_with_the_reason_and_the_good_run_still_works(bad_runs, make_app):
    at = make_app(bad_runs).run()
    assert not at.exception, [e.value for e in at.exception]
    df = runs_table(at)
    paths = {os.path.abspath(bad_runs / n): n for n in ["good", *NOT_OBJECTS, *WRONG_TYPES, *SPECIAL]}
    assert set(paths) <= set(df.index)
    good = df.loc[os.path.abspath(bad_runs / "good")]
    assert good["run"] == "good" and good["status"] == "finished" and good["steps"] == 99 and good["critical"] >= 1
    for path, name in paths.items():
        row = df.loc[path]
        if name in META_UNREADABLE:
            assert schema.META_FILE in row["hyperparameters"], name
        if row["status"] == "unreadable":
            assert schema.META_FILE in row["hyperparameters"] or schema.DB_FILE in row["hyperparameters"], name
        assert isinstance(row["run"], str) and row["run"], name
    # the sidebar lists every run, the unreadable ones as such
    menu = at.sidebar.selectbox(key="run").options
    assert len(menu) == len(df)
    assert sum("unreadable" in label for label in menu) >= len(META_UNREADABLE)


@pytest.mark.parametrize("name", ["good", *NOT_OBJECTS, *WRONG_TYPES, *SPECIAL])
def test_every_run_page_of_a_bad_run_says_why_or_draws(bad_runs, make_app, name):
    at = make_app(bad_runs)
    path = os.path.abspath(bad_runs / name)
    pages = RUN_PAGES if name in ("good", *WRONG_TYPES) else ("overview",)
    for page in pages:
        visit(at, page, path)
        errors = [e.value for e in at.error]
        drew = bool(at.get("plotly_chart"))
        assert drew or any("could not be read" in e for e in errors), (page, name, errors)
        if name in META_UNREADABLE:  # said on the error card, or above the charts of the numbers
            assert any(schema.META_FILE in e.value for e in list(at.error) + list(at.warning)), (page, name)
    # the other runs are not affected
    visit(at, "overview", os.path.abspath(bad_runs / "good"))
    assert at.get("plotly_chart")


def test_compare_and_train_pages_with_every_bad_run(bad_runs, make_app):
    at = make_app(bad_runs).run()
    everything = [os.path.abspath(p) for p in sorted(bad_runs.iterdir())]
    at.session_state["compare_runs"] = everything
    visit(at, "compare")
    assert at.get("plotly_chart")  # the good run (and the readable bad ones) are still drawn
    visit(at, "train")



def test_a_failure_on_one_run_lists_that_run_with_the_reason_and_the_others_as_usual(tmp_path, monkeypatch):
    """Whatever a check did not foresee: a summary that raises costs that run's row, nothing else."""
    for name in ("a", "b", "c"):
        small_run(tmp_path / name, name=name)
    real_data, real_info = summary_mod.run_data, summary_mod.run_info

    def data(run, findings):
        if run.path.name == "b":
            raise KeyError("no such layer")
        return real_data(run, findings)

    def info(ref, meta):
        if ref.label == "c":
            raise TypeError("unexpected run.json")
        return real_info(ref, meta)

    monkeypatch.setattr(summary_mod, "run_data", data)
    monkeypatch.setattr(summary_mod, "run_info", info)
    refs, _ = find_runs([tmp_path])
    store = summary_mod.SummaryStore(HandlePool())
    store.refresh(refs)
    rows = {r["path"]: r for r in store.rows(refs)}
    a, b, c = (rows[os.path.abspath(tmp_path / n)] for n in ("a", "b", "c"))
    assert a["status"] == "finished" and a["steps"] == 99
    assert b["status"] == "unreadable" and "KeyError" in b["hyperparameters"] and b["run"] == "b"
    # c's run.json part failed, its numbers did not: listed by folder, with them and the reason
    assert "unexpected run.json" in c["hyperparameters"] and c["run"] == "c" and c["steps"] == 99
    assert [ref.label for ref, _, _ in store.problems(refs)] == ["b"]  # the card: b cannot be opened

# -- 2. markup planted in run text --------------------------------------------------------------------
EVIL = ('![x](http://evil/x.png) [Click to re-authenticate](http://e) <img src=x onerror=alert(1)> '
        '<a href="http://evil">a</a> **bold** $x$ :red[red] www.evil.com')
# Layer names cannot hold "." or "/" (module paths, tag separators); the rest of the markup they can.
EVIL_LAYERS = {"net.0": "net.<img src=x onerror=alert(1)> :red[r]",
               "net.1": "net.**bold** [Click to re-authenticate](https:evil) $x$ ![x](x)"}
# A metric the training code logged under a name of its own (shown on Compare, titles included).
EVIL_METRIC = "val/<img src=x onerror=alert(1)> **bold**"
# Each piece of markup, unescaped: it must not appear in anything Streamlit renders as Markdown.
RAW_MARKUP = [re.compile(p) for p in (r"!\[x\]", r"(?<!\\)\[Click", r"(?<!\\)<img", r"(?<!\\)<a href",
                                      r"(?<!\\)\*\*bold", r"(?<!\\)\$x\$", r"(?<!\\):red\[")]
# Markup Plotly would render in titles, legends and hover labels.
RAW_HTML = re.compile(r"<img|<a href")


def _rename(name: str) -> str:
    for old, new in EVIL_LAYERS.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return name


def _renamed_tag(tag: str) -> str:
    family, name, stat = tags.parse(tag)
    if family not in ("act", "grad", "weight", "update_ratio"):
        return tag
    return f"{family}/{_rename(name)}" + (f"/{stat}" if stat else "")


@pytest.fixture(scope="module")
def evil_runs(tmp_path_factory):
    """A run with markup in every run.json text field, its hyperparameters and its layer names
    (run.json's module list and the tags in run.db), rewritten from a synthetic dead-ReLU run."""
    src = tmp_path_factory.mktemp("evil-src") / "src"
    small_run(src, fault="dead_relu", lr=0.5, seed=1)
    run = load_run(src)
    d = tmp_path_factory.mktemp("evil-runs")
    meta = json.loads(json.dumps(run.meta))
    for m in meta["model"]["modules"]:
        m["name"] = _rename(m["name"])
        m["type"] = f"{m['type']} {EVIL}" if m["name"] != m["type"] else m["type"]
    meta.update(name=EVIL, description=EVIL, workload=EVIL, error=EVIL,
                hparams={**meta["hparams"], "workload": "spirals", EVIL: EVIL, "activation": EVIL})
    w = RunWriter(d / "evil", meta)
    b = Batch()
    for t in run.scalar_tags():
        s = run.series(t)
        b.scalars[_renamed_tag(t)] = (s.index.to_numpy(), s.to_numpy())
    for t in run.hist_tags():
        h = run.histograms(t)
        b.hists[_renamed_tag(t)] = (h.steps, h.lo, h.hi, h.counts)
    b.tables += [(tags.calibration("val"), step, data) for step, data in run.tables(tags.calibration("val"))]
    acc = run.series("val/accuracy")
    b.scalars[EVIL_METRIC] = (acc.index.to_numpy(), acc.to_numpy())
    b.events.append((50, 1.7e9, EVIL, EVIL))
    w.write(b, last_step=run.last_step)
    w.close(schema.FAILED, error=EVIL)
    small_run(d / "plain", name="plain")
    # a folder named with markup whose run.json is broken: listed, and carded, by its folder name
    odd = d / EVIL_LAYERS["net.1"]
    small_run(odd)
    (odd / schema.META_FILE).write_text("{not json")
    (odd / schema.DB_FILE).unlink()
    return d


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


# Elements whose text Streamlit shows as it is (tables, code, plain text), and proto fields that
# are never Markdown (widget options and values); everything else with a body, label, title or
# help is Markdown.
PLAIN_ELEMENTS = {"dataframe", "arrow_data_frame", "code", "text", "json", "plotly_chart"}
MARKDOWN_FIELDS = {"body", "label", "help", "title", "caption"}


def rendered_markdown(at: AppTest) -> list[tuple[str, str]]:
    """(element type, text) of everything on the page that Streamlit renders as Markdown."""
    out = []

    def walk(node):
        proto = getattr(node, "proto", None)
        kind = getattr(node, "type", "")
        if proto is not None and kind not in PLAIN_ELEMENTS:
            data = MessageToDict(proto, preserving_proto_field_name=True)
            for key, value in data.items():
                if key in MARKDOWN_FIELDS:
                    out.extend((kind, s) for s in _strings(value))
                elif isinstance(value, dict):  # a Block's expandable / tab: its label is Markdown
                    out.extend((kind, s) for k, v in value.items() if k in MARKDOWN_FIELDS for s in _strings(v))
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)

    walk(at._tree)
    return out


# Plotly fields it draws as text (with its subset of HTML: <a href>, <b>, <br>): trace names and
# text, titles, hover labels, tick labels, annotations, and category values on an axis.
PLOTLY_TEXT_FIELDS = {"name", "text", "hovertext", "hovertemplate", "texttemplate", "ticktext", "title", "x", "y"}


def plotly_texts(at: AppTest) -> list[str]:
    out = []

    def walk(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k in PLOTLY_TEXT_FIELDS:
                    out.extend(_strings(v))
                elif isinstance(v, (dict, list)):
                    walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    for chart in at.get("plotly_chart"):
        walk(json.loads(chart.proto.spec))
    return out


def assert_no_markup(at: AppTest, where: str) -> None:
    bad = [(kind, text) for kind, text in rendered_markdown(at) if any(p.search(text) for p in RAW_MARKUP)]
    assert not bad, f"{where}: run text rendered as Markdown: {bad[:3]}"
    html = [t for t in plotly_texts(at) if RAW_HTML.search(t)]
    assert not html, f"{where}: run text rendered as HTML in a chart: {html[:3]}"


@pytest.mark.parametrize("page", ALL_PAGES)
def test_no_page_renders_run_text_as_markup(evil_runs, make_app, page):
    at = make_app(evil_runs).run()
    evil = os.path.abspath(evil_runs / "evil")
    at.session_state["compare_runs"] = [evil, os.path.abspath(evil_runs / "plain")]
    at.session_state["selected_runs"] = [evil, os.path.abspath(evil_runs / "plain")]
    visit(at, page, evil)
    shown = "\n".join(t for _, t in rendered_markdown(at))
    if page in RUN_PAGES:
        assert "re-authenticate" in shown, "the run's name is shown (escaped) in the header"
    assert_no_markup(at, page)
    if page == "compare":  # the metric picked names the chart
        at.selectbox(key="cmp_metric").set_value(EVIL_METRIC).run()
        assert_no_markup(at, "compare, a metric with markup in its name")
    if page == "overview":  # the advice cards name the planted layers; open their evidence too
        assert "bold" in shown and "onerror" in shown


def test_markup_in_run_text_is_escaped_in_the_runs_table_and_menus(evil_runs, make_app):
    at = make_app(evil_runs).run()
    df = runs_table(at)
    row = df.loc[os.path.abspath(evil_runs / "evil")]
    assert row["run"] == EVIL  # a dataframe cell shows text as it is: no escaping needed there
    assert any(EVIL in o for o in at.sidebar.selectbox(key="run").options)
    assert any("could not be read" in e.value and "re-authenticate" in e.value for e in at.error)  # the odd folder
    assert_no_markup(at, "runs")


# -- 3. many runs --------------------------------------------------------------------------------------
def test_the_runs_page_reads_run_db_once_per_change_and_keeps_no_unopened_run(tmp_path, make_app, monkeypatch):
    monkeypatch.setattr(summary_mod, "SYNC_RUNS", 3)  # more runs than this are read in the background
    small_run(tmp_path / "r0", name="r0")
    for i in range(1, 6):
        shutil.copytree(tmp_path / "r0", tmp_path / f"r{i}")
        meta = json.loads((tmp_path / f"r{i}" / schema.META_FILE).read_text())
        (tmp_path / f"r{i}" / schema.META_FILE).write_text(json.dumps({**meta, "name": f"r{i}"}))
    paths = [os.path.abspath(tmp_path / f"r{i}") for i in range(6)]
    store = cache.summaries()  # the process-wide store the app uses

    def reads():
        return sum(store.loads[p] for p in paths)

    at = make_app(tmp_path).run()
    df = runs_table(at)
    assert len(df) == 6 and set(df["status"]) == {"finished"}  # run.json alone: every run listed at once
    assert any("still reading the numbers of 6 of 6 runs" in c.value for c in at.caption)
    deadline = time.monotonic() + 60
    while store.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    df = runs_table(at)
    assert (df["steps"] == 99).all() and df["critical"].notna().all()
    assert not any("still reading" in c.value for c in at.caption)
    assert reads() == 6  # each run read once ...
    at.text_input(key="runs_filter").set_value("r1").run()
    at.selectbox(key="runs_sort").set_value("name").run()
    assert reads() == 6  # ... and not again while its files do not change
    assert not any(store.is_open(p) for p in paths)  # nothing kept in memory for runs not open
    # a run that changes is read again (few changed: at once); an opened run is kept in memory
    meta = json.loads((tmp_path / "r3" / schema.META_FILE).read_text())
    (tmp_path / "r3" / schema.META_FILE).write_text(json.dumps({**meta, "name": "r3-renamed"}))
    at.text_input(key="runs_filter").set_value("").run()
    assert reads() == 7 and "r3-renamed" in set(runs_table(at)["run"])
    visit(at, "overview", paths[2])
    assert store.is_open(paths[2]) and not store.is_open(paths[1])


# -- 4. exposure ---------------------------------------------------------------------------------------
def test_the_app_listens_on_localhost_only_and_sends_no_statistics():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["fileWatcherType"] == "none"


@pytest.mark.parametrize("address, kind", [(None, "warning"), ("", "warning"), ("localhost", None),
                                           ("127.0.0.1", None), ("::1", None), ("[::1]", None),
                                           ("0.0.0.0", "note"), ("::", "note"), ("192.168.1.5", "note")])
def test_the_sidebar_says_when_other_machines_can_connect(address, kind):
    note = exposure_note(address)
    assert (note[0] if note else None) == kind


@pytest.mark.parametrize("page", ("overview", "activations", "gradients", "updates"))  # the pages with advice
def test_an_advice_failure_quoting_run_text_is_escaped(evil_runs, tmp_path, make_app, monkeypatch, page):
    """When the rules fail, the page says so with the exception's message, which may quote run text."""
    class BrokenRules:
        @staticmethod
        def judge(run):
            raise ValueError(f"layer {EVIL} has no statistics")

    monkeypatch.setattr(loading, "_diagnostics", lambda: BrokenRules)
    shutil.copytree(evil_runs / "evil", tmp_path / "evil")  # a new path: no advice cached for it yet
    at = visit(make_app(tmp_path), page, os.path.abspath(tmp_path / "evil"))
    assert any("could not be computed" in w.value for w in list(at.warning)), page
    assert_no_markup(at, page)


def test_a_live_run_in_the_runs_table_follows_its_writer(tmp_path, make_app):
    """A live run's row keeps up with every flush; the run is read bit by bit (kept open), not
    re-read whole at each refresh."""
    writer = small_run(tmp_path / "live", name="live", status=None)
    path = os.path.abspath(tmp_path / "live")
    try:
        at = make_app(tmp_path).run()
        row = runs_table(at).loc[path]
        assert row["status"] == "live" and row["steps"] == 99
        assert cache.summaries().is_open(path)
        steps = np.arange(100, 150)
        writer.write(Batch(scalars={tags.TRAIN_LOSS: (steps, np.full(50, 0.25))}), last_step=149)
        at.run()
        row = runs_table(at).loc[path]
        assert row["steps"] == 149 and row["train loss"] == pytest.approx(0.25)
    finally:
        writer.close("finished")
    at.run()
    assert runs_table(at).loc[path, "status"] == "finished"
