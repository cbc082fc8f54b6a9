"""The background writer: takes host-side arrays from the recorder and writes them to the run
store (and the TensorBoard mirror) off the training thread."""

from __future__ import annotations

import queue
import threading
import warnings

import numpy as np

from runstore import Batch, RunWriter


class TensorBoardMirror:
    """Writes the same scalars and (already binned) histograms as TensorBoard event files."""

    def __init__(self, logdir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is an optional dependency
            raise ImportError("tensorboard=True needs the tensorboard package: pip install tensorboard") from e
        self._w = SummaryWriter(log_dir=str(logdir))

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
    """Owns the RunWriter; jobs are callables producing (Batch, last_step), run in order."""

    def __init__(self, writer: RunWriter, tb: TensorBoardMirror | None):
        self.writer, self.tb = writer, tb
        self._q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
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
            try:
                batch, last_step = job()
                if not batch.empty() or last_step is not None:
                    self.writer.write(batch, last_step=last_step)
                if self.tb is not None and not batch.empty():
                    self.tb.write(batch)
            except BaseException as e:  # keep training alive; report once on the training thread
                if self.error is None:
                    self.error = e
                    warnings.warn(f"probes could not write to {self.writer.run_dir}: {e!r}", RuntimeWarning)
            finally:
                self._q.task_done()

    def drain(self) -> None:
        """Wait until every job submitted so far is written (benchmarks charge that time to the run)."""
        self._q.join()

    def close(self, status: str, **meta) -> None:
        self._q.put(_STOP)
        self._t.join()
        if self.tb is not None:
            self.tb.close()
        if meta:
            self.writer.meta.update(meta)
        self.writer.close(status)
