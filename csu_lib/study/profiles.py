"""Profiles: named sizes for a whole study (benchmark preset + training settings).

- ``smoke``: seconds per run; used by the test suite to execute every notebook.
- ``quick``: the CPU main job (``make figures``), sized for a 2-core machine.
- ``paper``: ESC-FreeGen50-sized benchmark (100 clips of 5 s per class), for a GPU.

:func:`run_config` turns a profile plus overrides into a :class:`RunConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import (BENCHMARK_PRESETS, CorruptionConfig, DataConfig, FrontendConfig, LossConfig, ModelConfig,
                      RunConfig, TrainConfig, frontend_preset)
from ..core.errors import ConfigError, unknown_name
from ..models import DEFAULT_WIDTH


@dataclass(frozen=True)
class Profile:
    name: str
    benchmark: str
    epochs: int
    lr: float
    batch_size: int
    early_stopping_patience: int | None
    seeds: tuple[int, ...]
    #: Use each backbone's CPU-sized default width (``models.DEFAULT_WIDTH``) unless one is given.
    cpu_widths: bool = True
    #: The backbones the figure notebooks train by default (their ``models``/``model`` = None).
    backbones: tuple[str, ...] = ("small_cnn",)
    #: The corruption ratios of the degradation curves (the clean runs are ratio 0).
    ratios: tuple[float, ...] = (0.5,)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "smoke", epochs=2, lr=3e-3, batch_size=32, early_stopping_patience=None, seeds=(0,)),
    # 8 epochs of batch 16 (800 steps, ~22 s a run on 2 cores): the most runs that fit the 15-minute
    # main job; clean test mAP ~0.72 (not converged: see the README's measured results).
    "quick": Profile("quick", "quick", epochs=8, lr=3e-3, batch_size=16, early_stopping_patience=None,
                     seeds=(0,), ratios=(0.25, 0.5)),
    "paper": Profile("paper", "paper", epochs=60, lr=1e-3, batch_size=32, early_stopping_patience=15,
                     seeds=tuple(range(10)), cpu_widths=False, backbones=("mobilenetv2", "cnn14"),
                     ratios=(0.1, 0.2, 0.3, 0.4, 0.5)),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown_name("profile", name, PROFILES)
    return PROFILES[name]


def run_config(profile: str = "quick", *, loss: str = "bce", model: str = "small_cnn", seed: int = 0,
               epochs: int | None = None, device: str = "auto", width: float | None = None,
               corruption: dict[str, Any] | None = None,
               benchmark: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
               loss_options: dict[str, Any] | None = None,
               frontend: str | FrontendConfig | None = None) -> RunConfig:
    """A RunConfig for the embedded benchmark at a profile's size, with overrides.

    ``epochs=None`` takes the profile's value; ``width=None`` the backbone's CPU-sized default
    width (``models.DEFAULT_WIDTH``) in the smoke and quick profiles and full width in paper. ``corruption``, ``benchmark``, ``train`` and
    ``loss_options`` are dicts of field overrides for the corresponding config dataclasses.
    ``frontend`` is a preset name (``config.FRONTEND_PRESETS``) or a FrontendConfig; the embedded
    benchmark is then rendered at its sample rate (unless ``benchmark`` sets one).
    """
    p = get_profile(profile)
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= 0):
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    fe = frontend_preset(frontend) if isinstance(frontend, str) else (frontend or FrontendConfig())
    bench = BENCHMARK_PRESETS[p.benchmark].replace(**{"sample_rate": fe.sample_rate, **(benchmark or {})})
    train_cfg = TrainConfig(epochs=epochs or p.epochs, lr=p.lr, batch_size=p.batch_size, seed=seed, device=device,
                            early_stopping_patience=p.early_stopping_patience)
    if train:
        train_cfg = train_cfg.replace(**train)
    return RunConfig(data=DataConfig(benchmark=bench), frontend=fe, corruption=CorruptionConfig(**(corruption or {})),
                     model=ModelConfig(name=model, width=width if width is not None else _width(p, model)), loss=LossConfig(name=loss, **(loss_options or {})),
                     train=train_cfg)


def _width(profile: Profile, model: str) -> float:
    return DEFAULT_WIDTH.get(model, 1.0) if profile.cpu_widths else 1.0
