"""The one place the dashboard words and colours a run's status.

Keyed by the status values runstore writes (runstore.schema), plus the job state of a training
process that has not created its run yet (jobs.STARTING) and a folder the app could not read.
Every page (header badge, Runs table and filter, sidebar menu) asks here.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs import STARTING
from runstore.schema import FAILED, FINISHED, IMPORTED, KILLED, RUNNING, STOPPED

UNREADABLE = "unreadable"  # a run folder whose run.json or run.db could not be read


@dataclass(frozen=True)
class StatusLook:
    label: str   # what the user reads: words, not emoji (headless browsers lack emoji fonts)
    color: str   # st.badge colour name
    help: str    # one sentence for tooltips


LOOKS = {
    STARTING: StatusLook("starting", "violet", "The training process is starting; the run appears once it records."),
    RUNNING: StatusLook("live", "green", "Being recorded now; the pages refresh as new steps arrive."),
    FINISHED: StatusLook("finished", "blue", "Training ended normally."),
    FAILED: StatusLook("failed", "red", "Training ended with an error (see the run's header)."),
    STOPPED: StatusLook("stopped", "gray", "Stopped on request before the planned end."),
    KILLED: StatusLook("not finished", "orange", "The recording process is gone (crashed or killed) without "
                       "closing the run; what it recorded is shown."),
    IMPORTED: StatusLook("imported", "gray", "Read from another format (a TensorBoard log), which does not say "
                         "whether training still runs."),
    UNREADABLE: StatusLook("unreadable", "red", "The run's files could not be read."),
}
# The order statuses are listed in (filters, legends).
ORDER = tuple(LOOKS)


def look(status: str) -> StatusLook:
    """How to show a status; an unknown value shows as itself, in grey."""
    return LOOKS.get(status) or StatusLook(str(status), "gray", "")


def label(status: str) -> str:
    return look(status).label


def color(status: str) -> str:
    return look(status).color
