"""Figures: drawing only. Every function takes numbers already computed (by
:mod:`csu_lib.analysis`) and draws onto matplotlib axes (or a plotly figure); nothing here trains,
probes or computes an analysis.

- :mod:`.style`: the palette and style (writing the figure files is
  :mod:`csu_lib.report.figure_files`; a figure's JSON, :mod:`csu_lib.report.figure_numbers`);
- :mod:`.corruption`, :mod:`.sigma`, :mod:`.planes` (score plane, landscapes, geometry),
  :mod:`.results` (degradation, uneven noise by class group, relative change, class precision, method comparison) and
  :mod:`.runs` (one run's curves, the explorer), :mod:`.class_noise_audit` (the class-noise audit),
  :mod:`.decisive` (the decisive study: paired differences to BCE).
"""
from .class_noise_audit import ESTIMATOR_LABELS, plot_auroc_by_level, plot_estimator_comparison
from .corruption import plot_class_rates, plot_label_counts, plot_soft_values, plot_transition_matrix
from .decisive import plot_paired_to_bce
from .planes import (CLIP_STYLE, GEOMETRY_STATISTICS, plot_geometry_summary, plot_landscape_1d, plot_landscape_2d,
                     plot_score_plane, plotly_landscape_2d)
from .results import (plot_class_precision, plot_degradation, plot_degradation_uneven, plot_mask_sweep,
                      plot_method_comparison, plot_relative_change)
from .runs import plot_class_sigma, plot_explorer, plot_history, plot_logmel
from .sigma import plot_multiplier_trajectories, plot_sigma_kde, plot_sigma_vs_truth
from .style import PALETTE, use_style

__all__ = ["CLIP_STYLE", "ESTIMATOR_LABELS", "plot_auroc_by_level", "plot_estimator_comparison", "GEOMETRY_STATISTICS", "PALETTE", "plot_class_precision", "plot_class_rates",
           "plot_class_sigma", "plot_degradation", "plot_degradation_uneven", "plot_explorer", "plot_geometry_summary", "plot_history",
           "plot_label_counts", "plot_landscape_1d", "plot_landscape_2d", "plot_logmel", "plot_mask_sweep",
           "plot_method_comparison", "plot_multiplier_trajectories", "plot_paired_to_bce", "plot_relative_change", "plot_score_plane",
           "plot_sigma_kde", "plot_sigma_vs_truth", "plot_soft_values", "plot_transition_matrix",
           "plotly_landscape_2d", "use_style"]
