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
                      RunConfig, TrainConfig, frontend_preset, parse_data_spec)
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
    #: ``TrainConfig.lr_schedule`` of the profile's runs.
    lr_schedule: str = "constant"
    #: ``TrainConfig.lr_decays``: learning-rate decays (x0.1) on a validation plateau before stopping.
    lr_decays: int = 0
    #: The methods of the comparison figure (``<loss>`` or ``<loss>+<method>``) and the
    #: teacher-masking percentages of its sweep (0 % is the plain BCE run).
    methods: tuple[str, ...] = ("bce", "bce+teacher_mask", "bce+label_correction", "bce+psl", "bce+mixup_or", "csu")
    mask_percents: tuple[float, ...] = (5.0, 10.0)


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", "smoke", epochs=2, lr=3e-3, batch_size=32, early_stopping_patience=None, seeds=(0,)),
    # every run to a validation plateau at a decayed rate: 5 epochs without a gain divide the rate
    # by 10, twice; the third plateau stops the run (at most 100 epochs; without the decays the
    # runs stopped while the training loss and CSU's sigma were still falling), 3 seeds,
    # one ratio, four methods and one masking percentage (docs/results.md: timings)
    "quick": Profile("quick", "quick", epochs=100, lr=3e-3, batch_size=32, early_stopping_patience=5, lr_decays=2,
                     seeds=(0, 1, 2), backbones=("pooled_cnn",), ratios=(0.5,),
                     methods=("bce", "bce+teacher_mask", "bce+label_correction", "csu"), mask_percents=(5.0,)),
    "paper": Profile("paper", "paper", epochs=60, lr=1e-3, batch_size=32, early_stopping_patience=15,
                     seeds=tuple(range(10)), cpu_widths=False, backbones=("mobilenetv2", "cnn14"),
                     ratios=(0.1, 0.2, 0.3, 0.4, 0.5),
                     # the in-sample teacher of Fonseca et al. beside an out-of-fold one (5 fold teachers)
                     methods=("bce", "bce+teacher_mask", "bce+teacher_mask@oof5", "bce+label_correction", "bce+psl",
                              "bce+mixup_or", "csu")),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise unknown_name("profile", name, PROFILES)
    return PROFILES[name]


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
    ``loss_options`` are dicts of field overrides for the corresponding config dataclasses.
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
                            lr_decays=p.lr_decays)
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
                     model=ModelConfig(name=model, width=width if width is not None else _width(p, model)), loss=LossConfig(name=loss, **(loss_options or {})),
                     train=train_cfg)


def _width(profile: Profile, model: str) -> float:
    return DEFAULT_WIDTH.get(model, 1.0) if profile.cpu_widths else 1.0
