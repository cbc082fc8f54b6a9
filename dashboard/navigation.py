"""The page registry: every page's key, title, icon, script and section, in menu order.

A page key is also the vocabulary of `Finding.chart` (the page that shows a finding's evidence)
and the page's URL path. To add a page (e.g. the Train page of the training-jobs feature), write
`dashboard/views/<key>.py` with a `render()` function and a two-line `dashboard/pages/<key>.py`
script that calls it, then add a PageSpec here (section TRAIN_SECTION is reserved for it).
"""

from __future__ import annotations

from dataclasses import dataclass

RUNS_SECTION = "Runs"
RUN_SECTION = "One run"
TRAIN_SECTION = "Train"  # the Train page: training jobs started from the dashboard (the jobs package)


@dataclass(frozen=True)
class PageSpec:
    """One page of the app."""

    key: str
    title: str
    icon: str
    section: str
    default: bool = False

    @property
    def script(self) -> str:
        """Script path relative to app.py (what st.Page, st.switch_page and AppTest take)."""
        return f"dashboard/pages/{self.key}.py"


PAGES: tuple[PageSpec, ...] = (
    PageSpec("runs", "Runs", ":material/table_rows:", RUNS_SECTION, default=True),
    PageSpec("compare", "Compare", ":material/stacked_line_chart:", RUNS_SECTION),
    PageSpec("overview", "Overview", ":material/monitoring:", RUN_SECTION),
    PageSpec("activations", "Activations", ":material/bolt:", RUN_SECTION),
    PageSpec("gradients", "Gradients", ":material/trending_down:", RUN_SECTION),
    PageSpec("updates", "Updates", ":material/tune:", RUN_SECTION),
    PageSpec("predictions", "Predictions", ":material/target:", RUN_SECTION),
    PageSpec("train", "Train", ":material/play_arrow:", TRAIN_SECTION),
    PageSpec("sweep", "Sweep", ":material/grid_view:", TRAIN_SECTION),
)

BY_KEY = {p.key: p for p in PAGES}


def page(key: str) -> PageSpec | None:
    """The page with this key (e.g. a Finding's `chart`), or None if there is none."""
    return BY_KEY.get(key)


def sections(pages=PAGES) -> dict[str, list[PageSpec]]:
    """Pages grouped by section, in registry order (the shape st.navigation takes)."""
    out: dict[str, list[PageSpec]] = {}
    for p in pages:
        out.setdefault(p.section, []).append(p)
    return out
