"""Compared training methods, applied on top of any loss (methods.md sections 3-5).

A :class:`Method` acts at two points of the training loop:

- :meth:`Method.train_targets` once, before training: the (corrupted) training labels in,
  the targets and an optional 0/1 loss mask (N_train, C) out (teacher masking, label
  correction);
- :meth:`Method.transform_batch` on every batch: features, targets and mask of the batch in,
  transformed ones out (mixup, pseudo strong labels' chunking).

``rows`` are indices into the training split (0..N_train-1), so per-clip teacher scores can
be looked up. Randomness comes from the ``generator`` the loop passes (seeded per epoch).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


class Method:
    """Plain training: targets are the labels, nothing is masked or mixed."""

    def train_targets(self, labels: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        return labels, None

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor], rows: np.ndarray,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        return x, y, mask

    def summary(self) -> dict:
        """Numbers worth keeping in the run record (e.g. how many labels were masked)."""
        return {}


def build_method(config, data, *, run_dir=None, cache_dir=None, progress: bool = True) -> Method:
    """The :class:`Method` of ``config.method`` for prepared ``data`` (a teacher is trained or
    loaded here when the method needs one)."""
    if config.method.name == "none":
        return Method()
    raise NotImplementedError(config.method.name)
