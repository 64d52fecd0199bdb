"""The model registry: backbones register themselves by name (:func:`register_model`) with a
CPU-friendly default width; :func:`build_model` builds one from a
:class:`~csu_lib.config.ModelConfig`."""
from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from ..core import registry

#: name -> constructor ``Model(n_classes, n_mels=64, width=1.0, dropout=0.2)`` (the "model" registry).
MODELS: dict[str, Callable[..., nn.Module]] = registry.registry("model")

#: CPU-friendly width per model (the README's default size); a model not listed: 1.0.
DEFAULT_WIDTH: dict[str, float] = {}


def register_model(name: str, *, default_width: float = 1.0):
    """Class decorator: register a backbone as ``name`` with its CPU-sized ``default_width``."""
    def add(cls):
        registry.register("model", name)(cls)
        DEFAULT_WIDTH[name] = float(default_width)
        return cls
    return add


def build_model(config: ModelConfig, n_classes: int, n_mels: int) -> nn.Module:
    """The backbone ``config.name`` at ``config.width`` / ``config.dropout`` (logits out)."""
    return MODELS[config.name](n_classes=n_classes, n_mels=n_mels, width=config.width, dropout=config.dropout)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _count_on_meta(name: str, n_classes: int, n_mels: int, width: float) -> int:
    """Parameter count without allocating or initialising weights (built on the meta device)."""
    with torch.device("meta"):
        return count_parameters(MODELS[name](n_classes=n_classes, n_mels=n_mels, width=width))


def multiply_adds(model: nn.Module, n_mels: int = 64, n_frames: int = 101) -> int:
    """Multiply-adds of one forward pass of one clip (``n_mels`` x ``n_frames``, e.g. 1 s at the
    default 10 ms hop), counted by ``torch.utils.flop_counter`` (FLOPs / 2) in eval mode."""
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, n_mels, n_frames, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2)


def model_summary(n_classes: int = 50, n_mels: int = 64, n_frames: int = 101) -> pd.DataFrame:
    """One row per registered model: its CPU default width (:data:`DEFAULT_WIDTH`), its
    parameter counts at that width and at full width (width 1.0), and the multiply-adds of one
    clip of ``n_mels`` x ``n_frames`` at the default width (:func:`multiply_adds`)."""
    rows = []
    for name, cls in MODELS.items():
        width = DEFAULT_WIDTH.get(name, 1.0)
        with torch.device("meta"):
            macs = multiply_adds(MODELS[name](n_classes=n_classes, n_mels=n_mels, width=width), n_mels, n_frames)
        rows.append({"model": name, "class": getattr(cls, "__name__", str(cls)), "default_width": width,
                     "params_default": _count_on_meta(name, n_classes, n_mels, width),
                     "params_full": _count_on_meta(name, n_classes, n_mels, 1.0), "macs_default": macs})
    return pd.DataFrame(rows)
