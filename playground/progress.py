"""A dependency-free terminal progress bar for training: steps, loss, validation, elapsed and ETA."""

from __future__ import annotations

import math
import sys
import time


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """Callable for playground.train(progress=...). On a terminal it redraws one line in place; when
    the output is a file (a train.log) it writes a plain line every `log_every_s` seconds."""

    def __init__(self, *, stream=None, width: int = 24, min_interval_s: float = 0.1, log_every_s: float = 5.0):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.width = width
        self.interval = min_interval_s if self.tty else log_every_s
        self._last = -math.inf
        self._drawn = False

    def line(self, p) -> str:
        """The text of one progress line for Progress `p`."""
        frac = p.step / p.total if p.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        val = ""
        if p.val_loss is not None:
            val = f" val {p.val_loss:.4f}"
            if p.val_accuracy is not None:
                val += f" acc {100 * p.val_accuracy:.1f}%"
        return (f"[{bar}] {p.step}/{p.total} {100 * frac:3.0f}% epoch {p.epoch} loss {p.loss:.4f}{val} "
                f"{_clock(p.elapsed_s)}<{_clock(p.eta_s)}")

    def __call__(self, p) -> None:
        now = time.monotonic()
        if p.step < p.total and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line(p) + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(self.line(p) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the redrawn line so later output starts on a fresh one."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
