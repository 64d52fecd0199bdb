"""The training stage: a :class:`~csu_lib.config.RunConfig` in, a run record out.

- what a run trains on (dataset -> corruption -> features) is prepared before this stage, by
  :mod:`csu_lib.pipeline`;
- :mod:`.method_rules` and :mod:`.methods`: the compared methods (teacher masking, label
  correction, pseudo strong labels, mixup), registered by name; :mod:`.oracles`: the class and
  sample oracles (they read the corruption record: reference points, not methods);
  :mod:`.teacher`: a teacher's scores; :mod:`.planner`: which runs a run needs first (its
  teacher) and a sweep's order;
- :mod:`.seeding`: every seed formula of training; :mod:`.optimiser`: optimiser groups and the
  learning-rate schedule;
- :mod:`.engine`: THE epoch loop (batch order, early stopping, best weights, history, s log,
  checkpoint/resume, the end of a run), with three backends: :mod:`.single` (one process),
  :mod:`.ddp` over :mod:`.distributed` (torchrun) and :mod:`.stacked` (vectorised groups);
- :mod:`.run`: :func:`train_run`; :mod:`.groups`: :func:`train_group` and group planning.
"""
from .engine import RunState, StepHook, train_epochs
from .groups import VARYING, check_group, group_key, groupable, plan_groups, train_group
from .method_rules import POSITIVE, psl_chunk_layout
from .methods import BATCH_METHODS, METHODS, Method, build_method
from .oracles import ClassOracle, SampleOracle, class_oracle_weights
from .planner import dependencies, plan
from .predict import predict
from .run import train_run
from .optimiser import lr_factor
from .seeding import group_seed
from .stacked import StackedRuns
from .teacher import (TeacherLabelsWarning, fold_teacher_configs, teacher_config, teacher_run_dir,
                      teacher_scores)

__all__ = ["BATCH_METHODS", "METHODS", "POSITIVE", "VARYING", "ClassOracle", "Method", "RunState", "SampleOracle",
           "StackedRuns", "StepHook", "TeacherLabelsWarning", "build_method", "check_group", "class_oracle_weights", "dependencies", "fold_teacher_configs", "group_key", "group_seed", "groupable", "lr_factor", "plan",
           "plan_groups", "predict", "psl_chunk_layout", "teacher_config", "teacher_run_dir", "teacher_scores", "train_epochs", "train_group", "train_run"]
