"""Configuration dataclasses for every stage; each serialises to JSON and back.

A :class:`RunConfig` travels with every run record and checkpoint, so a run can always be
reproduced and its numbers explained (front-end settings included). Loading is strict: an
unknown key or a bad value raises :class:`~csu_lib.errors.ConfigError` naming it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import ConfigError


def _check(cond: bool, name: str, msg: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"{name} {msg}, got {value!r}")


class Serialisable:
    """Mixin: ``to_dict``/``from_dict``/``to_json``/``hash`` for nested dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = ""):
        return _from_plain(cls, data, where or cls.__name__)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"unknown {type(self).__name__} field(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def hash(self, length: int = 12) -> str:
        """A stable hash of the configuration (key order, formatting and ``1`` vs ``1.0`` for a
        float field do not matter: the dict is normalised through ``from_dict`` first)."""
        normalised = type(self).from_dict(self.to_dict()).to_dict()
        blob = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _from_plain(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _from_plain(args[0], data, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping, got {data!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(
                f"unknown key(s) {sorted(unknown)} in {where}; valid keys: {sorted(names)}"
            )
        kwargs = {k: _from_plain(hints[k], v, f"{where}.{k}") for k, v in data.items()}
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(data, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {data!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(data)
        if args and len(args) != len(data):
            raise ConfigError(f"{where} must have {len(args)} items, got {data!r}")
        return tuple(_from_plain(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args or [Any] * len(data), data)))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return [_from_plain(arg, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp in (int, float) and not _is_number(data):
        raise ConfigError(f"{where} must be a number, got {data!r}")
    return data


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------
# Front-end


@dataclass(frozen=True)
class FrontendConfig(Serialisable):
    """Log-mel front-end: torchaudio MelSpectrogram (power) + AmplitudeToDB."""

    name: str = "panns16k"
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    top_db: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0, f"frontend.{name}", "must be a positive integer", value)
        _check(self.win_length <= self.n_fft, "frontend.win_length", "must be <= n_fft", self.win_length)
        _check(0 <= self.f_min < self.f_max <= self.sample_rate / 2, "frontend.f_max",
               "must satisfy 0 <= f_min < f_max <= sample_rate/2", (self.f_min, self.f_max))


#: Named front-end presets (methods.md section 6).
FRONTEND_PRESETS: dict[str, FrontendConfig] = {
    "panns16k": FrontendConfig(),
    "psl16k": FrontendConfig(name="psl16k", f_min=0.0, top_db=120.0),
    "panns32k": FrontendConfig(name="panns32k", sample_rate=32000, n_fft=1024, win_length=1024,
                               hop_length=320, n_mels=64, f_min=50.0, f_max=14000.0),
}


def frontend_preset(name: str) -> FrontendConfig:
    from .errors import unknown_name

    if name not in FRONTEND_PRESETS:
        raise unknown_name("front-end preset", name, FRONTEND_PRESETS)
    return FRONTEND_PRESETS[name]


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class BenchmarkConfig(Serialisable):
    """The embedded procedural benchmark (see :mod:`csu_lib.benchmark`)."""

    n_families: int = 10
    classes_per_family: int = 5
    clips_per_class: int = 40
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    sample_rate: int = 16000
    clip_seconds: float = 2.0
    multi_label: bool = False
    max_events: int = 3
    snr_db: tuple[float, float] = (-3.0, 12.0)
    generated_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        _check(1 <= self.n_families <= 10, "benchmark.n_families", "must be in 1..10", self.n_families)
        _check(2 <= self.classes_per_family <= 5, "benchmark.classes_per_family", "must be in 2..5",
               self.classes_per_family)
        _check(isinstance(self.clips_per_class, int) and self.clips_per_class >= 3,
               "benchmark.clips_per_class", "must be an integer >= 3", self.clips_per_class)
        _check(len(self.split_fractions) == 3 and abs(sum(self.split_fractions) - 1) < 1e-6
               and min(self.split_fractions) > 0, "benchmark.split_fractions",
               "must be three positive numbers summing to 1", self.split_fractions)
        _check(self.sample_rate >= 8000, "benchmark.sample_rate", "must be >= 8000", self.sample_rate)
        _check(0.25 <= self.clip_seconds <= 30, "benchmark.clip_seconds", "must be in [0.25, 30]",
               self.clip_seconds)
        _check(1 <= self.max_events <= 3, "benchmark.max_events", "must be in 1..3", self.max_events)
        _check(self.snr_db[0] <= self.snr_db[1], "benchmark.snr_db", "must be (low, high)", self.snr_db)
        _check(0 <= self.generated_fraction <= 1, "benchmark.generated_fraction", "must be in [0, 1]",
               self.generated_fraction)

    @property
    def n_classes(self) -> int:
        return self.n_families * self.classes_per_family


#: Size presets of the embedded benchmark: smoke (tests), quick (CPU main job), paper (GPU).
BENCHMARK_PRESETS: dict[str, BenchmarkConfig] = {
    "smoke": BenchmarkConfig(clips_per_class=10, clip_seconds=0.5),
    "quick": BenchmarkConfig(clips_per_class=40, clip_seconds=1.0),
    "paper": BenchmarkConfig(clips_per_class=100, clip_seconds=5.0),
}


@dataclass(frozen=True)
class DataConfig(Serialisable):
    """Which dataset a run uses. ``dataset='embedded'`` needs no download."""

    dataset: str = "embedded"
    root: Optional[str] = None
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    clip_seconds: Optional[float] = None  # None: the benchmark's clip length (required for real data)
    #: Keyword arguments for the dataset's loader in :mod:`csu_lib.loaders` (e.g. ``val_fold`` for
    #: esc50, ``delimiter``/``default_split`` for csv, ``skip_missing`` for audioset).
    loader_options: dict = field(default_factory=dict)
    #: Check every audio file first; unreadable, missing, empty or truncated clips are dropped
    #: and listed in the run record's ``skipped_clips.json`` instead of stopping the run.
    skip_unreadable: bool = False

    def __post_init__(self) -> None:
        from .datasets import DATASETS  # late import: datasets imports config
        from .errors import unknown_name

        if self.dataset not in DATASETS:
            raise unknown_name("dataset", self.dataset, DATASETS)
        if self.dataset != "embedded" and not self.root:
            raise ConfigError(f"data.root must point at the {self.dataset} folder")
        _check(self.clip_seconds is None or (_is_number(self.clip_seconds) and self.clip_seconds > 0),
               "data.clip_seconds", "must be a positive number of seconds", self.clip_seconds)
        _check(isinstance(self.loader_options, dict), "data.loader_options", "must be a mapping",
               self.loader_options)


# ---------------------------------------------------------------------------------------------
# Corruption (supervision unreliability, methods.md section 2)

CORRUPTION_KINDS = ("none", "san", "man", "sln", "missing")


@dataclass(frozen=True)
class CorruptionConfig(Serialisable):
    """Label corruption injected into the training split (see :mod:`csu_lib.corruption`).

    ``kind``: none | san (spurious addition) | man (misassignment) | sln (weakened evidence,
    soft positive) | missing (positive removed). ``ratio``: fraction of training clips corrupted
    (exactly ``round(ratio * N)``). ``target``: uniform | similar (SAN/MAN replacement class
    drawn from the dataset's class similarity). ``profile``: uniform | concentrated (only
    ``k_classes`` source classes) | graded (per-class rates with mean ``ratio``).
    ``nested``: the clips corrupted at a smaller ratio are among those at a larger one.
    """

    kind: str = "none"
    ratio: float = 0.0
    target: str = "uniform"
    profile: str = "uniform"
    k_classes: int = 5
    graded_concentration: float = 2.0
    soft_range: tuple[float, float] = (0.6, 0.9)
    nested: bool = True
    seed: int = 0
    #: ESC-FreeGen50 only: use the published noisy label files of ``kind``/``ratio`` instead of
    #: injecting (``labels/{additive,flip,soft,remove}_error_<ratio>/train.json``).
    published: bool = False

    def __post_init__(self) -> None:
        from .errors import unknown_name

        if self.kind not in CORRUPTION_KINDS:
            raise unknown_name("corruption type", self.kind, CORRUPTION_KINDS)
        _check(_is_number(self.ratio) and 0.0 <= self.ratio <= 1.0, "corruption.ratio",
               "must lie in [0, 1]", self.ratio)
        _check(self.target in ("uniform", "similar"), "corruption.target", "must be 'uniform' or 'similar'",
               self.target)
        _check(self.profile in ("uniform", "concentrated", "graded"), "corruption.profile",
               "must be 'uniform', 'concentrated' or 'graded'", self.profile)
        _check(isinstance(self.k_classes, int) and self.k_classes >= 1, "corruption.k_classes",
               "must be a positive integer", self.k_classes)
        _check(self.graded_concentration > 0, "corruption.graded_concentration", "must be positive",
               self.graded_concentration)
        lo, hi = self.soft_range
        _check(0.0 <= lo <= hi <= 1.0, "corruption.soft_range", "must satisfy 0 <= low <= high <= 1",
               self.soft_range)

    @property
    def label(self) -> str:
        """``clean`` or e.g. ``san 50%``: how figures and tables name the condition."""
        return corruption_label(self.kind, self.ratio)


def corruption_label(kind: str, ratio: float) -> str:
    """``clean`` for no corruption, else ``<kind> <ratio in %>`` (e.g. ``man 50%``)."""
    return "clean" if kind == "none" or ratio == 0 else f"{kind} {round(ratio * 100)}%"


# ---------------------------------------------------------------------------------------------
# Compared methods (methods.md sections 3-5)

METHODS = ("none", "teacher_mask", "label_correction", "psl", "mixup_or", "mixup")


@dataclass(frozen=True)
class MethodConfig(Serialisable):
    """A training method applied on top of the loss (see :mod:`csu_lib.methods`).

    - ``teacher_mask`` (Fonseca et al. 2020): per class, the top ``mask_percent`` % teacher-scored
      negatives are masked out of the loss.
    - ``label_correction`` (Braun & Gamper 2024): threshold ``threshold`` (T); ``correct`` "fn" or
      "fn+fp"; ``masking`` adds masking of low-confidence contradictions.
    - ``psl`` (Dinkel et al. 2022): the student trains on ``chunk_seconds`` chunks with targets
      ``alpha * teacher + (1 - alpha) * weak label``.
    - ``mixup_or``: 1..``max_mix`` clips mixed with random level offsets (N(0, ``level_db_std``) dB),
      labels OR-joined; ``mixup``: standard mixup, Beta(``mixup_alpha``) weights, labels interpolated.
    ``teacher``: a teacher run directory or a score file (.npy, (n_train, C) probabilities in the
    training split's order); None trains a BCE teacher with the same data, corruption and model.
    Any method combines with any loss (e.g. CSU + mixup_or).
    """

    name: str = "none"
    teacher: Optional[str] = None
    mask_percent: float = 5.0
    threshold: float = 0.05
    correct: str = "fn"
    masking: bool = True
    chunk_seconds: float = 0.5
    alpha: float = 1.0
    max_mix: int = 2
    level_db_std: float = 2.0
    mixup_alpha: float = 0.4

    def __post_init__(self) -> None:
        from .errors import unknown_name

        if self.name not in METHODS:
            raise unknown_name("method", self.name, METHODS)
        _check(_is_number(self.mask_percent) and 0 <= self.mask_percent <= 100, "method.mask_percent",
               "must lie in [0, 100]", self.mask_percent)
        _check(_is_number(self.threshold) and 0 < self.threshold < 0.5, "method.threshold",
               "must lie in (0, 0.5)", self.threshold)
        _check(self.correct in ("fn", "fn+fp"), "method.correct", "must be 'fn' or 'fn+fp'", self.correct)
        _check(_is_number(self.chunk_seconds) and self.chunk_seconds > 0, "method.chunk_seconds",
               "must be positive", self.chunk_seconds)
        _check(_is_number(self.alpha) and 0 <= self.alpha <= 1, "method.alpha", "must lie in [0, 1]", self.alpha)
        _check(isinstance(self.max_mix, int) and self.max_mix >= 1, "method.max_mix", "must be an integer >= 1",
               self.max_mix)
        _check(_is_number(self.level_db_std) and self.level_db_std >= 0, "method.level_db_std", "must be >= 0",
               self.level_db_std)
        _check(_is_number(self.mixup_alpha) and self.mixup_alpha > 0, "method.mixup_alpha", "must be positive",
               self.mixup_alpha)

    @property
    def needs_teacher(self) -> bool:
        return self.name in ("teacher_mask", "label_correction", "psl")


# ---------------------------------------------------------------------------------------------
# Model, loss, training


@dataclass(frozen=True)
class ModelConfig(Serialisable):
    name: str = "small_cnn"
    width: float = 1.0
    dropout: float = 0.2

    def __post_init__(self) -> None:
        from .errors import unknown_name
        from .models import MODELS

        if self.name not in MODELS:
            raise unknown_name("model", self.name, MODELS)
        _check(self.width > 0, "model.width", "must be positive", self.width)
        _check(0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)", self.dropout)


@dataclass(frozen=True)
class LossConfig(Serialisable):
    """``bce`` or ``csu``; the ``csu_*`` fields apply to CSU only (methods.md section 1)."""

    name: str = "bce"
    csu_init: float = 0.0
    csu_clamp: tuple[float, float] = (-5.0, 5.0)
    csu_lr: Optional[float] = None  # None: the model's learning rate
    csu_scale: str = "full"  # "full": exp(-s) * BCE; "half": exp(-s) / 2 * BCE (1/(2 sigma^2))
    csu_class_reduction: str = "sum"  # "sum" or "mean" over classes

    def __post_init__(self) -> None:
        from .errors import unknown_name
        from .losses import LOSSES

        if self.name not in LOSSES:
            raise unknown_name("loss", self.name, LOSSES)
        lo, hi = self.csu_clamp
        _check(lo < hi and lo <= self.csu_init <= hi, "loss.csu_clamp",
               "must be (low, high) with low <= csu_init <= high", self.csu_clamp)
        _check(self.csu_lr is None or self.csu_lr > 0, "loss.csu_lr", "must be positive", self.csu_lr)
        _check(self.csu_scale in ("full", "half"), "loss.csu_scale", "must be 'full' or 'half'",
               self.csu_scale)
        _check(self.csu_class_reduction in ("sum", "mean"), "loss.csu_class_reduction",
               "must be 'sum' or 'mean'", self.csu_class_reduction)


LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig(Serialisable):
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam" or "adamw"
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    amp: bool = True  # mixed precision, on CUDA only
    early_stopping_patience: Optional[int] = 10  # epochs without val-mAP gain; None: off
    eval_batch_size: int = 128
    #: Per-step learning-rate schedule: "constant", or "cosine" (linear warm-up over the first
    #: 5% of steps, then cosine decay to 0). Computed from the global step, so resuming needs no
    #: scheduler state.
    lr_schedule: str = "constant"
    #: Convolutions in channels_last memory format (about 1.5x faster for the CNNs on this CPU,
    #: see bench/); the numbers differ from contiguous format only by float rounding.
    channels_last: bool = True
    #: Whether the feature store is held in memory (on the training device) or streamed from its
    #: shards: "auto" (held when <= 2 GiB and <= a quarter of the free device memory), "always",
    #: "never". Only speed and memory depend on it, never the numbers (csu_lib.features).
    features_in_memory: str = "auto"

    def __post_init__(self) -> None:
        _check(self.features_in_memory in ("auto", "always", "never"), "train.features_in_memory",
               "must be 'auto', 'always' or 'never'", self.features_in_memory)
        _check(self.lr_schedule in LR_SCHEDULES, "train.lr_schedule", f"must be one of {LR_SCHEDULES}",
               self.lr_schedule)
        _check(isinstance(self.channels_last, bool), "train.channels_last", "must be true or false",
               self.channels_last)
        _check(isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs > 0,
               "train.epochs", "must be a positive integer", self.epochs)
        _check(isinstance(self.batch_size, int) and self.batch_size > 0, "train.batch_size",
               "must be a positive integer", self.batch_size)
        _check(_is_number(self.lr) and self.lr > 0, "train.lr", "must be a positive number", self.lr)
        _check(self.optimizer in ("adam", "adamw"), "train.optimizer", "must be 'adam' or 'adamw'",
               self.optimizer)
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0", self.weight_decay)
        _check(self.early_stopping_patience is None or self.early_stopping_patience > 0,
               "train.early_stopping_patience", "must be a positive integer or None",
               self.early_stopping_patience)
        _check(isinstance(self.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None,
               "train.device", "must be 'auto', 'cpu' or 'cuda[:N]'", self.device)


@dataclass(frozen=True)
class RunConfig(Serialisable):
    """Everything that determines one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.dataset == "embedded" and self.data.benchmark.sample_rate != self.frontend.sample_rate:
            raise ConfigError(
                f"frontend.sample_rate ({self.frontend.sample_rate}) must equal "
                f"data.benchmark.sample_rate ({self.data.benchmark.sample_rate})"
            )

    @property
    def run_id(self) -> str:
        """Runs are keyed by the hash of their configuration."""
        method = "" if self.method.name == "none" else f"{self.method.name}-"
        return f"{method}{self.loss.name}-{self.model.name}-s{self.train.seed}-{self.hash(10)}"
