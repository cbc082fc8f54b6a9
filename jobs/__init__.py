"""Training jobs: playground trainings run as separate processes, each recording one run directory.

    launcher    the one way to start `python -m playground train` (argument list, config file, log)
    supervisor  JobManager: start within a concurrency limit, list, stop (SIGTERM, then SIGKILL of
                the process group), and the job state derived from the run directory alone
    rerun       a run's hyperparameters as a Config, and a Finding's fix applied to them

Imports playground.config and runstore only: never torch (the child process does), never
Streamlit or Plotly (the dashboard's Train page wraps this package).
"""

from .launcher import LaunchError, argument_text, child_env, command, launch
from .rerun import AppliedFix, Change, FixError, apply_fix, changes_between, config_from_hparams, fmt_value, rerunnable
from .supervisor import (DEFAULT_GRACE_S, JOBS_LOCK, LIVE_STATES, MAX_JOBS_LIMIT, STARTING, JobError, JobInfo,
                         JobLimitError, JobManager, cpu_cores, default_max_jobs, new_run_dir, slugify, wait_for)

__all__ = ["LaunchError", "argument_text", "child_env", "command", "launch", "AppliedFix", "Change", "FixError",
           "apply_fix", "changes_between", "config_from_hparams", "fmt_value", "rerunnable", "DEFAULT_GRACE_S",
           "JOBS_LOCK", "LIVE_STATES", "MAX_JOBS_LIMIT", "STARTING", "JobError", "JobInfo", "JobLimitError",
           "JobManager", "cpu_cores", "default_max_jobs", "new_run_dir", "slugify", "wait_for"]
