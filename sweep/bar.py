"""The command line's progress bar for a sweep: trials done of the budget, running, pruned,
failed, the best value so far, elapsed time and an ETA at the pace so far."""

from __future__ import annotations

import math
import sys
import time

from playground.progress import _clock


class SweepBar:
    """Call with a study.Progress; on a terminal it redraws one line, into a file it writes a
    line every `log_every_s`."""

    def __init__(self, objective: str, *, stream=None, width: int = 24, log_every_s: float = 10.0):
        self.objective = objective
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width
        self.interval = 0.0 if self.tty else log_every_s
        self.t0 = time.monotonic()
        self._start_finished: int | None = None
        self._last = -math.inf
        self._last_line = ""
        self._drawn = False

    def line(self, p) -> str:
        done = p.finished
        frac = min(1.0, done / p.n_trials) if p.n_trials else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.monotonic() - self.t0
        if self._start_finished is None:
            self._start_finished = done
        new = done - self._start_finished
        eta = elapsed / new * max(0, p.n_trials - done) if new > 0 else math.nan
        best = f" best {p.best.value:.4g} (#{p.best.number})" if p.best is not None else ""
        parts = [f"{p.counts.get(k, 0)} {k}" for k in ("running", "pruned", "failed", "stopped") if p.counts.get(k)]
        extra = (" · " + ", ".join(parts)) if parts else ""
        stop = " · stopping" if p.stop_requested else ""
        return (f"[{bar}] {done}/{p.n_trials} trials{extra}{best}{stop} "
                f"{_clock(elapsed)}<{_clock(eta)}")

    def __call__(self, p) -> None:
        text = self.line(p)
        now = time.monotonic()
        if self.tty:
            if text != self._last_line:
                self.stream.write("\r" + text + "\x1b[K")
                self.stream.flush()
                self._drawn = True
        elif now - self._last >= self.interval or p.done:
            if text != self._last_line:
                self.stream.write(text + "\n")
                self.stream.flush()
            self._last = now
        self._last_line = text

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
