"""Scores of a model in eval mode (:func:`predict`: what validation, the final evaluation and a
teacher use), and the batch-norm statistics they are computed with (:func:`recalibrate_batchnorm`)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def predict(model: torch.nn.Module, feats: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
            batch_size: int, device: torch.device) -> np.ndarray:
    """Sigmoid scores (len(rows), C) of ``model`` in eval mode on the features ``feats(rows)``
    (bfloat16 autocast on CUDA)."""
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        x = feats(rows[start:start + batch_size])
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(torch.sigmoid(model(x).float()).cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, feats: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
                          batch_size: int, device: torch.device) -> int:
    """"Precise BN": replace the running mean and variance of every BatchNorm layer of ``model`` by
    the average of its batch statistics over ``feats(rows)`` in batches of ``batch_size`` (the
    batch statistics training normalises with), so that eval-mode scores depend on the weights
    alone. Nothing else of the model is run in training mode (dropout stays off) and no random
    number is drawn, so training after a recalibration goes on exactly as without it. Leaves the
    model in eval mode; returns the number of batches seen (0: the model has no BatchNorm)."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    model.eval()
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average of the batch statistics
        m.train()
    # near-equal batches (no straggler of one clip, which batch statistics cannot use)
    batches = np.array_split(np.asarray(rows), max(1, -(-len(rows) // batch_size)))
    try:
        for batch in batches:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                model(feats(batch))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
    return len(batches)
