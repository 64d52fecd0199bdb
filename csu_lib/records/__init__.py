"""Run records: one self-describing directory per training run (:mod:`.layout`), written by
:mod:`.writer` and read by :mod:`.reader` -- nothing else in csu_lib opens a run file."""
from . import layout
from .reader import (RunRecord, cached_teacher_scores, find_runs, flatten_into, has_checkpoint, has_model,
                     is_complete, load_checkpoint, load_run, load_runs, model_file_stamp, read_config,
                     read_corruption, records_frame)
from .writer import (finalize, prepare_run_dir, run_lock, save_checkpoint, versions, write_corruption, write_model,
                     write_progress, write_scores, write_start, write_teacher_scores)

__all__ = ["RunRecord", "cached_teacher_scores", "finalize", "find_runs", "flatten_into", "has_checkpoint",
           "has_model", "is_complete", "layout", "load_checkpoint", "load_run", "load_runs", "model_file_stamp",
           "prepare_run_dir", "read_config", "read_corruption", "records_frame", "run_lock", "save_checkpoint", "versions",
           "write_corruption", "write_model", "write_progress", "write_scores", "write_start",
           "write_teacher_scores"]
