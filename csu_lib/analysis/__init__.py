"""The analysis stage: everything computed from run records for the figures (nothing draws).

- :mod:`.sigma` (tables, trajectories) and :mod:`.sigma_stats` (densities, agreement with the
  truth): CSU's learned sigma;
- :mod:`.score_plane`: the per-sample loss over a class pair's logits, with the recipe;
- :mod:`.landscape` (directions, surfaces), :mod:`.geometry` (curvature, sharpness) and
  :mod:`.landscape_probe` (cached probes of runs): parameter-space geometry;
- :mod:`.results`: tables across runs (mean and CI over seeds, degradation, relative change,
  class-wise precision, ``csu report``); :mod:`.class_groups`: test mAP over the corrupted and
  over the control classes of a run (uneven noise); :mod:`.comparison`: the method comparison;
  :mod:`.decisive`: the decisive study (every run paired with BCE, the oracles' recovery);
- :mod:`.explorer`: the numbers behind the interactive explorer;
- :mod:`.figure_stats`: the rest of what a figure shows (geometry bars with their CIs, mean
  landscape curves, the top-sigma classes, the class-precision order and means, histograms), so
  that :mod:`csu_lib.plots` only draws.
"""
