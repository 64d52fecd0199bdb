"""A class-similarity matrix for real data that ships none, from a trained model's confusions:
what ``corruption.target="similar"`` (SAN/MAN targets drawn among similar classes) needs
(:func:`similarity_from_scores`). Save it with ``numpy.save`` and name it in the data spec
(``similarity_file``)."""
from __future__ import annotations

import numpy as np

from ..core.errors import ConfigError


def similarity_from_scores(scores: np.ndarray, labels: np.ndarray, *, top_k: int = 3) -> np.ndarray:
    """(C, C) similarity from a model's sigmoid ``scores`` on clips with known ``labels`` (e.g. a
    clean-label teacher's validation scores): confusion[i, j] = the mean score of class j over the
    clips whose label is i, symmetrised; each class keeps its ``top_k`` most confused other
    classes (weights = that confusion), every other entry is 0; the diagonal is 1. A class
    without a labelled clip has no similar class (a MAN/SAN draw from it then stops, naming it)."""
    scores, pos = np.asarray(scores, np.float64), np.asarray(labels) >= 0.5
    if scores.shape != pos.shape or scores.ndim != 2:
        raise ConfigError(f"scores and labels must have the same (N, C) shape, got {scores.shape} and {pos.shape}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
    n = scores.shape[1]
    confusion = np.zeros((n, n))
    for c in range(n):
        if pos[:, c].any():
            confusion[c] = scores[pos[:, c]].mean(axis=0)
    sym = (confusion + confusion.T) / 2
    np.fill_diagonal(sym, 0.0)
    out = np.zeros((n, n))
    for c in range(n):
        if not pos[:, c].any():
            continue
        keep = np.argsort(-sym[c], kind="stable")[:top_k]
        out[c, keep] = np.maximum(sym[c, keep], 1e-6)  # a kept class stays drawable
    np.fill_diagonal(out, 1.0)
    return out
