"""Rule-based training diagnostics: load a run, get ranked findings with evidence and fixes.

    import diagnostics
    run = diagnostics.load_run("runs/my-exp")          # or a TensorBoard log directory
    for f in diagnostics.advise(run):
        print(f.severity, f.rule, f.message)

Never imports torch, streamlit or plotly (tensorboard only to read event files).
"""

from runstore import RunReadError

from . import verdicts
from .engine import Judgement, advise, judge
from .finding import SEVERITIES, Finding
from .grouping import Problem, group
from .loading import load_run
from .rules import RULE_IDS
from .thresholds import Thresholds
from .view import fmt

__all__ = ["advise", "judge", "Judgement", "verdicts", "load_run", "Finding", "Thresholds", "RunReadError", "SEVERITIES", "RULE_IDS", "fmt",
           "Problem", "group"]
