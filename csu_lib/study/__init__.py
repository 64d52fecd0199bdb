"""The study stage: sets of runs.

- :mod:`.profiles`: :func:`run_config`, a run from a profile (the named sizes smoke / quick / paper
  are configuration: :mod:`csu_lib.config.profiles`);
- :mod:`.grid`: a study's run configurations (:func:`grid`, YAML files with :func:`load_study`,
  method comparisons with :func:`comparison_configs`);
- engines that train them: :mod:`.local` (:func:`run_all`, in this process) and
  :mod:`.ray_engine` (one Ray task per run), chosen by :func:`run_sweep` (:mod:`.sweep`).
"""
from .oof_teacher import oof_teacher_scores
from .grid import (STUDY_KEYS, audit_configs, comparison_configs, grid, load_study, mask_sweep_configs, run_dir_for,
                   unique_configs)
from .local import SweepResult, run_all, run_local
from ..config.profiles import PROFILES, Profile, get_profile
from .profiles import run_config
from .sweep import ENGINES, run_sweep

__all__ = ["ENGINES", "PROFILES", "STUDY_KEYS", "Profile", "SweepResult", "audit_configs", "oof_teacher_scores", "comparison_configs", "get_profile",
           "grid", "load_study", "mask_sweep_configs", "run_all", "run_config", "run_dir_for", "run_local",
           "run_sweep", "unique_configs"]
