"""Scores of a model in eval mode: what validation, the final evaluation and a teacher use."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


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
