"""What the recorder buffers between flushes (FlushBuffer), and the background writer that turns
it into the run store's arrays and writes them (and the TensorBoard mirror) off the training
thread."""

from __future__ import annotations

import queue
import threading
import time
import warnings
from collections import defaultdict

import numpy as np
import torch

from runstore import Batch, RunWriter, schema
from .arrays import group_by_device

_SCALARS, _HISTS, _TABLE = "scalars", "hists", "table"  # kinds of device entries


class FlushBuffer:
    """Everything recorded since the last flush. The training thread appends through the typed
    methods below (one tuple per call: it is the hot path); at the flush, start_copy() moves device
    values to the host in one transfer per device, and the writer thread calls to_batch().

    Values from a GPU stay on it until the flush, so the training thread never waits for the
    device; values from the CPU are plain numbers (or small numpy arrays) already. A row of values
    for a tuple of tags holds len(tags) numbers, flat or as equal-length columns (stat by stat,
    runstore.tags.stat_tags)."""

    def __init__(self):
        self.meta: dict = {}  # run.json fields learnt while training (e.g. n_classes)
        self._rows: list[tuple] = []  # (tags, step, values)
        self._hists: list[tuple] = []  # (tags, step, lo (k,), hi (k,), counts (k, bins))
        self._tables: list[tuple] = []  # (tag, step, numpy array, to_dict)
        self._events: list[tuple] = []  # (step, time, kind, message)
        # (kind, tags, step, tensor, extra): extra is a table's (shape, to_dict), a fixed histogram
        # range (lo, hi), or None
        self._device: list[tuple] = []
        self._copies: list[tuple] = []  # after start_copy: (layout, host tensor, CUDA event or None)

    # -- the training thread -------------------------------------------------------------------
    def scalars(self, tags: tuple, step: int, values) -> None:
        """Numbers on the host, one per tag."""
        self._rows.append((tags, step, values))

    def device_scalars(self, tags: tuple, step: int, values: torch.Tensor) -> None:
        """One number per tag, as a tensor on any device, read at the flush."""
        self._device.append((_SCALARS, tags, step, values, None))

    def hists(self, tags: tuple, step: int, lo: np.ndarray, hi: np.ndarray, counts: np.ndarray) -> None:
        """One histogram per tag on the host: range lo[i]..hi[i], counts[i] in equal-width bins."""
        self._hists.append((tags, step, lo, hi, counts))

    def device_hists(self, tags: tuple, step: int, counts: torch.Tensor, lo, hi) -> None:
        """hists() for tensors on one device (read at the flush, in one vector). lo and hi are
        tensors, or numbers: one fixed range for all (e.g. probabilities over [0, 1])."""
        if isinstance(lo, torch.Tensor):
            self._device.append((_HISTS, tags, step, torch.cat([counts.reshape(-1), lo.float(), hi.float()]), None))
        else:
            self._device.append((_HISTS, tags, step, counts, (float(lo), float(hi))))

    def table(self, tag: str, step: int, data: np.ndarray, to_dict) -> None:
        """A table stored as to_dict(data), which runs on the writer thread."""
        self._tables.append((tag, step, data, to_dict))

    def device_table(self, tag: str, step: int, data: torch.Tensor, to_dict) -> None:
        """table() for data on a device; to_dict gets it as a float64 numpy array of its shape."""
        self._device.append((_TABLE, (tag,), step, data.reshape(-1), (data.shape, to_dict)))

    def event(self, step: int | None, kind: str, message: str) -> None:
        self._events.append((step, time.time(), kind, message))

    def start_copy(self) -> None:
        """At the flush: concatenate each device's values and start copying them to the host. On
        CUDA the copy is asynchronous (into pinned memory): the training thread does not wait."""
        for items in group_by_device(self._device, lambda it: it[3]):
            flat = torch.cat([it[3].reshape(-1).float() for it in items])
            ready = None
            if flat.device.type == "cuda":
                flat = flat.to("cpu", non_blocking=True)  # lands in pinned memory; no wait here
                ready = torch.cuda.Event()
                ready.record()
            elif flat.device.type != "cpu":
                flat = flat.cpu()  # other accelerators (mps, xpu): a plain copy
            layout = [(kind, tg, step, t.numel(), extra) for kind, tg, step, t, extra in items]
            self._copies.append((layout, flat, ready))
        self._device = []  # the device tensors themselves are not kept past the flush

    # -- the writer thread ---------------------------------------------------------------------
    def to_batch(self) -> Batch:
        """Tagged scalars, histograms, tables and events. Rows with the same tags (the same layer at
        many steps) become one 2-D array, so the work per value is numpy's, not Python's."""
        batch = Batch(events=list(self._events), meta=dict(self.meta))
        dev_rows, dev_hists = self._read_copies(batch.tables)
        host_rows: dict[tuple, tuple[list, list]] = {}  # tags -> (steps, rows: flat or columns)
        for tg, step, values in self._rows:
            g = host_rows.setdefault(tg, ([], []))
            g[0].append(step), g[1].append(values)
        # Kept apart from the device rows: a row here may be columns, there it is flat (a model
        # moved between devices during the run records the same tags both ways).
        columns: dict[str, list] = defaultdict(list)  # tag -> [(steps, values), ...]
        for groups in (dev_rows, host_rows):
            for tg, (steps, values) in groups.items():
                table = np.asarray(values, np.float64).reshape(len(steps), len(tg))
                steps = np.asarray(steps, np.int64)
                for j, t in enumerate(tg):
                    columns[t].append((steps, table[:, j]))
        for t, parts in columns.items():
            steps = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
            vals = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
            order = np.argsort(steps, kind="stable")
            batch.scalars[t] = (steps[order], np.ascontiguousarray(vals[order]))

        hcolumns: dict[str, list] = defaultdict(list)  # tag -> [(steps, lo, hi, counts), ...]
        for t, (steps, lo, hi, counts) in dev_hists.items():  # one histogram per entry
            hcolumns[t].append((np.asarray(steps, np.int64), np.asarray(lo, np.float64), np.asarray(hi, np.float64),
                                np.stack(counts)))
        hgroups: dict[tuple, tuple[list, list, list, list]] = {}  # tags -> (steps, lo rows, hi rows, counts)
        for tg, step, lo, hi, counts in self._hists:
            g = hgroups.setdefault(tg, ([], [], [], []))
            g[0].append(step), g[1].append(lo), g[2].append(hi), g[3].append(counts)
        for tg, (steps, lo, hi, counts) in hgroups.items():  # one (k, bins) block per step
            steps, lo, hi, counts = np.asarray(steps, np.int64), np.stack(lo), np.stack(hi), np.stack(counts)
            for j, t in enumerate(tg):
                hcolumns[t].append((steps, lo[:, j], hi[:, j], counts[:, j]))
        for t, parts in hcolumns.items():
            steps, lo, hi, counts = (np.concatenate(x) for x in zip(*parts)) if len(parts) > 1 else parts[0]
            order = np.argsort(steps, kind="stable")
            batch.hists[t] = (steps[order], lo[order].astype(np.float64), hi[order].astype(np.float64),
                              np.ascontiguousarray(counts[order], dtype=np.float64))
        for tag, step, data, to_dict in self._tables:
            batch.tables.append((tag, step, to_dict(data)))
        return batch

    def _read_copies(self, tables: list) -> tuple[dict, dict]:
        """The device values, once their copies have landed: (tags -> (steps, flat rows), tag ->
        (steps, lows, highs, counts)); tables are decoded into `tables`."""
        rows: dict[tuple, tuple[list, list]] = {}
        hists: dict[str, tuple[list, list, list, list]] = defaultdict(lambda: ([], [], [], []))
        for layout, flat, ready in self._copies:
            if ready is not None:
                ready.synchronize()  # waits on the writer thread, never on the training thread
            arr = flat.numpy().astype(np.float64)
            off = 0
            for kind, tg, step, n, extra in layout:
                chunk = arr[off:off + n]
                off += n
                if kind is _SCALARS:
                    g = rows.setdefault(tg, ([], []))
                    g[0].append(step), g[1].append(chunk)
                elif kind is _HISTS:  # k histograms: counts (k*bins), then k lows and k highs unless fixed
                    k = len(tg)
                    if extra is None:
                        counts, lows, highs = chunk[:-2 * k].reshape(k, -1), chunk[-2 * k:-k], chunk[-k:]
                    else:
                        counts, (lows, highs) = chunk.reshape(k, -1), ([extra[0]] * k, [extra[1]] * k)
                    for i, t in enumerate(tg):
                        h = hists[t]
                        h[0].append(step), h[1].append(lows[i]), h[2].append(highs[i]), h[3].append(counts[i])
                else:
                    shape, to_dict = extra
                    tables.append((tg[0], step, to_dict(chunk.reshape(shape))))
        return rows, hists


class TensorBoardMirror:
    """Writes the same scalars and (already binned) histograms as TensorBoard event files."""

    def __init__(self, logdir, summary_writer=None):
        self._w = (summary_writer or self.writer_class())(log_dir=str(logdir))

    @staticmethod
    def writer_class():
        """TensorBoard's SummaryWriter; asked for before the run folder is made, so a missing
        package leaves no run behind."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is an optional dependency
            raise ImportError("tensorboard=True needs the tensorboard package: pip install tensorboard") from e
        return SummaryWriter

    def write(self, batch: Batch) -> None:
        for tag, (steps, vals) in batch.scalars.items():
            for s, v in zip(steps.tolist(), vals.tolist()):
                self._w.add_scalar(tag, v, s)
        for tag, (steps, lo, hi, counts) in batch.hists.items():
            bins = counts.shape[1]
            for i, s in enumerate(steps.tolist()):
                c = counts[i].astype(np.float64)
                num = float(c.sum())
                if num == 0:
                    continue
                edges = np.linspace(lo[i], hi[i], bins + 1)
                centers = (edges[:-1] + edges[1:]) / 2
                # TensorBoard takes upper bucket limits; sums are from bin centres (the raw values
                # never left the device).
                self._w.add_histogram_raw(tag, min=float(lo[i]), max=float(hi[i]), num=num,
                                          sum=float((c * centers).sum()), sum_squares=float((c * centers ** 2).sum()),
                                          bucket_limits=edges[1:].tolist(), bucket_counts=c.tolist(), global_step=s)
        self._w.flush()

    def close(self) -> None:
        self._w.close()


_STOP = object()


class WriterThread:
    """Owns the RunWriter; jobs are callables producing (Batch, last_step), run in order.

    A write that fails (a full disk, a folder deleted under it) never reaches the training thread:
    the first error is kept and reported once as a RuntimeWarning, later flushes are still tried
    (space may come back), and close() marks the run failed with what was lost."""

    def __init__(self, writer: RunWriter, tb: TensorBoardMirror | None):
        self.writer, self.tb = writer, tb
        self._q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None  # the first failure
        self.failed_flushes = 0
        self._flushes = 0
        self._t = threading.Thread(target=self._loop, name="probes-writer", daemon=True)
        self._t.start()

    def submit(self, job) -> None:
        self._q.put(job)

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            if job is _STOP:
                self._q.task_done()
                return
            self._flushes += 1
            try:
                batch, last_step = job()
                if not batch.empty() or last_step is not None:
                    self.writer.write(batch, last_step=last_step)
                if self.tb is not None and not batch.empty():
                    self.tb.write(batch)
            except BaseException as e:  # keep training alive; warn once
                self._failed(e, "some of the run's data is lost; training goes on and the run will be "
                                "marked failed")
            finally:
                self._q.task_done()

    def _failed(self, e: BaseException, consequence: str) -> None:
        self.failed_flushes += 1
        if self.error is None:
            self.error = e
            warnings.warn(f"probes could not write to {self.writer.run_dir}: {e!r}; {consequence}.",
                          RuntimeWarning, stacklevel=2)

    def loss_report(self) -> str | None:
        """What the run's error says about data the probes could not write, or None."""
        if self.error is None:
            return None
        return (f"probes could not write {self.failed_flushes} of {self._flushes} flushes to the run "
                f"directory: {self.error!r}")

    def drain(self) -> None:
        """Wait until every job submitted so far is written (benchmarks charge that time to the run)."""
        self._q.join()

    def close(self, status: str, *, error: str | None = None, **meta) -> None:
        """Stop the thread once everything submitted is written, then record how the run ended.
        Never raises for a failed write: a run whose data was not all written is marked failed
        (with the reason next to the caller's error), if run.json can still be written."""
        self._q.put(_STOP)
        self._t.join()
        if self.tb is not None:
            try:
                self.tb.close()
            except Exception as e:
                self._failed(e, "the TensorBoard mirror is incomplete")
        lost = self.loss_report()
        if lost is not None:
            status, error = schema.FAILED, f"{error}; {lost}" if error else lost
        if error:
            meta["error"] = error
        try:
            self.writer.meta.update(meta)
            self.writer.close(status)
        except Exception as e:
            warnings.warn(f"probes could not record the end of the run in {self.writer.run_dir} "
                          f"(status {status!r}{': ' + error if error else ''}): {e!r}. Its {schema.META_FILE} still "
                          f"says it is running; once this process ends, readers report it as killed.",
                          RuntimeWarning, stacklevel=3)
            if self.error is None:
                self.error = e
