"""A run configuration from a profile (:mod:`csu_lib.config.profiles`: smoke, quick, paper) plus
overrides: :func:`run_config`."""
from __future__ import annotations

from typing import Any

from ..config import (BENCHMARK_PRESETS, CorruptionConfig, DataConfig, FrontendConfig, LossConfig, ModelConfig,
                      RunConfig, TrainConfig, frontend_preset, parse_data_spec, parse_loss_spec)
from ..config.profiles import Profile, get_profile
from ..core.errors import ConfigError
from ..models import DEFAULT_WIDTH


def run_config(profile: str = "quick", *, loss: str = "bce", model: str | None = None, seed: int = 0,
               epochs: int | None = None, device: str = "auto", width: float | None = None,
               corruption: dict[str, Any] | None = None,
               benchmark: dict[str, Any] | None = None, train: dict[str, Any] | None = None,
               loss_options: dict[str, Any] | None = None,
               frontend: str | FrontendConfig | None = None, data: Any = None) -> RunConfig:
    """A RunConfig at a profile's training sizes, on the embedded benchmark at the profile's size
    or on the dataset of the data spec ``data`` (:func:`csu_lib.config.parse_data_spec`: a
    mapping, a YAML file or a DataSpec; its front-end preset applies unless ``frontend`` is
    given, and with ``published_noise`` every corrupted condition reads the published files).

    ``model=None`` is the profile's first backbone; ``epochs=None`` takes the profile's value
    (the cap when the profile stops early); ``width=None`` the backbone's CPU-sized default
    width (``models.DEFAULT_WIDTH``) in the smoke and quick profiles and full width in paper. ``corruption``, ``benchmark``, ``train`` and
    ``loss_options`` are dicts of field overrides for the corresponding config dataclasses. ``loss``
    is a loss name or a variant spelling such as ``csu_stationary`` (:func:`csu_lib.config.parse_loss_spec`).
    ``frontend`` is a preset name (``config.FRONTEND_PRESETS``) or a FrontendConfig; the embedded
    benchmark is then rendered at its sample rate (unless ``benchmark`` sets one).
    """
    p = get_profile(profile)
    model = model or p.backbones[0]
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= 0):
        raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
    spec = parse_data_spec(data)
    if spec is not None and benchmark:
        raise ConfigError(f"benchmark overrides apply to the embedded benchmark, not to dataset {spec.data.dataset!r}")
    frontend = frontend if frontend is not None or spec is None else spec.frontend
    fe = frontend_preset(frontend) if isinstance(frontend, str) else (frontend or FrontendConfig())
    bench = BENCHMARK_PRESETS[p.benchmark].replace(**{"sample_rate": fe.sample_rate, **(benchmark or {})})
    data_cfg = DataConfig(benchmark=bench) if spec is None else spec.data
    train_cfg = TrainConfig(epochs=epochs or p.epochs, lr=p.lr, batch_size=p.batch_size, seed=seed, device=device,
                            early_stopping_patience=p.early_stopping_patience, lr_schedule=p.lr_schedule,
                            lr_decays=p.lr_decays, bn_recalibration=p.bn_recalibration)
    if train:
        train_cfg = train_cfg.replace(**train)
    # the corruption draw follows the training seed (unless the caller sets corruption.seed), so that
    # an interval over seeds also covers which clips were corrupted
    corruption = dict(corruption or {})
    if corruption.get("kind", "none") != "none":
        corruption = {"seed": seed, **corruption}
        if spec is not None and spec.published_noise:
            corruption["published"] = True
    return RunConfig(data=data_cfg, frontend=fe, corruption=CorruptionConfig(**corruption),
                     model=ModelConfig(name=model, width=width if width is not None else _width(p, model)),
                     loss=_loss_config(loss, loss_options),
                     train=train_cfg)


def _loss_config(loss: str, options: dict[str, Any] | None) -> LossConfig:
    """The LossConfig of a loss spelling (``csu``, ``csu_stationary``: :func:`parse_loss_spec`)
    with the field overrides ``options`` on top."""
    name, fields = parse_loss_spec(loss)
    return LossConfig(name=name, **{**fields, **(options or {})})


def _width(profile: Profile, model: str) -> float:
    return DEFAULT_WIDTH.get(model, 1.0) if profile.cpu_widths else 1.0
