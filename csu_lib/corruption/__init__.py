"""Supervision unreliability: label corruption of the training split (docs/methods.md, section 2).

- :mod:`.inject`: SAN, MAN, SLN and missing-positive injectors (:func:`corrupt_labels`), with
  uniform, concentrated, graded and audit class profiles (:mod:`.audit_design`: corrupted classes at
  several within-class levels beside untouched control classes);
- :mod:`.published`: the published ESC-FreeGen50 noisy label files as a corruption
  (:func:`load_freegen50_noisy`);
- :mod:`.result`: :class:`CorruptionResult`, what either did, with the true per-class rates;
- :mod:`.similarity`: a class similarity from a model's confusions (``target="similar"`` on real data).
"""
from .audit_design import LEVEL_FRACTIONS, audit_levels
from .inject import (INJECTED_KINDS, concentrated_source_classes, corrupt_labels, corruption_summary,
                     graded_class_weights, injection_configs, man_transition_matrix, soft_values, transitions)
from .published import check_published, load_freegen50_noisy
from .result import KIND_CODES, CorruptionResult, rates_from_labels
from .similarity import similarity_from_scores

__all__ = ["INJECTED_KINDS", "LEVEL_FRACTIONS", "audit_levels", "KIND_CODES", "CorruptionResult", "check_published", "concentrated_source_classes",
           "corrupt_labels", "corruption_summary", "graded_class_weights", "injection_configs", "load_freegen50_noisy",
           "man_transition_matrix", "rates_from_labels", "similarity_from_scores", "soft_values", "transitions"]
