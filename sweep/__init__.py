"""Sweeps that know why a trial is failing: Optuna studies over the playground's Config with a
pruner that reads each trial's recording (needs the `sweep` extra: pip install 'traindiag[sweep]').

    space       which Config fields vary (log-uniform, int, categorical), coarse-to-fine narrowing
    spec        SweepSpec: base config, space, budget, objective, pruner, sampler (stored with the study)
    storage     Optuna RDB storage: a SQLite file in the runs folder, or any database URL
    study       create / load (resume) / list trials / stop / best / narrow
    pruner      DiagnosisPruner (composable with Optuna's pruners), make_pruner
    trainer     the playground objective: one trial = one recorded run (imports torch when called)
    worker      worker processes sharing a study
    integration attach(trial, model, optimizer, run_dir=...): the pruner in your own objective

Importing this package does not import torch.
"""

from .integration import TrialRecorder, attach
from .pruner import HOPELESS_RULES, DiagnosisPruner, make_pruner
from .space import Param, SpaceError, default_space, narrow, parse_param, parse_space, space_text
from .spec import OBJECTIVES, PRUNERS, SAMPLERS, SpecError, SweepSpec, check_study_name
from .storage import StorageError, default_url, open_storage
from .study import (StudyError, TrialSeededSampler, create_study, load, narrowed, progress, request_stop,
                    rerun_best, study_names, trial_rows, workers)

__all__ = ["TrialRecorder", "attach", "HOPELESS_RULES", "DiagnosisPruner", "make_pruner", "Param", "SpaceError",
           "default_space", "narrow", "parse_param", "parse_space", "space_text", "OBJECTIVES", "PRUNERS",
           "SAMPLERS", "SpecError", "SweepSpec", "check_study_name", "StorageError", "default_url", "open_storage",
           "StudyError", "TrialSeededSampler", "create_study", "load", "narrowed", "progress", "request_stop",
           "rerun_best", "study_names", "trial_rows", "workers"]
