"""What a run reads: the log-mel front-end, the embedded benchmark and the dataset."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..core import registry
from ..core.errors import ConfigError, unknown_name
from .base import Serialisable, _check, _is_number


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


#: Named front-end presets (docs/methods.md, section 6).
FRONTEND_PRESETS: dict[str, FrontendConfig] = {
    "panns16k": FrontendConfig(),
    "psl16k": FrontendConfig(name="psl16k", f_min=0.0, top_db=120.0),
    "panns32k": FrontendConfig(name="panns32k", sample_rate=32000, n_fft=1024, win_length=1024,
                               hop_length=320, n_mels=64, f_min=50.0, f_max=14000.0),
}


def frontend_preset(name: str) -> FrontendConfig:
    if name not in FRONTEND_PRESETS:
        raise unknown_name("front-end preset", name, FRONTEND_PRESETS)
    return FRONTEND_PRESETS[name]


@dataclass(frozen=True)
class BenchmarkConfig(Serialisable):
    """The embedded procedural benchmark (see :mod:`csu_lib.data.benchmark`)."""

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
    #: Keyword arguments for the dataset's loader in :mod:`csu_lib.data` (e.g. ``val_fold`` for
    #: esc50, ``delimiter``/``default_split`` for csv, ``skip_missing`` for audioset).
    loader_options: dict = field(default_factory=dict)
    #: Check every audio file first; unreadable, missing, empty or truncated clips are dropped
    #: and listed in the run record's ``skipped_clips.json`` instead of stopping the run.
    skip_unreadable: bool = False
    #: ``(k, K)``: the run trains on its training split without fold ``k`` of ``K`` (the clips of
    #: the split dealt into K folds by a permutation seeded by ``train.seed``,
    #: :func:`csu_lib.pipeline.data_pipeline.training_folds`); what the out-of-fold teachers of
    #: ``MethodConfig.teacher_folds`` train on. None: the whole training split.
    holdout_fold: Optional[tuple[int, int]] = None
    #: A ``.npy`` (C, C) class-similarity matrix for a dataset that ships none (the embedded
    #: benchmark's families, or e.g. ``corruption.similarity_from_scores`` of a teacher's
    #: confusions): what ``corruption.target="similar"`` draws SAN/MAN targets with.
    similarity_file: Optional[str] = None

    # fields added after run ids were stored: omitted from the hash at their earlier behaviour
    HASH_OMIT = {"holdout_fold": None, "similarity_file": None}

    def __post_init__(self) -> None:
        registry.check("dataset", self.dataset)
        if self.holdout_fold is not None:
            fold = self.holdout_fold
            _check(isinstance(fold, tuple) and len(fold) == 2
                   and all(isinstance(v, int) and not isinstance(v, bool) for v in fold)
                   and fold[1] >= 2 and 0 <= fold[0] < fold[1], "data.holdout_fold",
                   "must be None or (k, K) with integers K >= 2 and 0 <= k < K", fold)
        if self.dataset != "embedded" and not self.root:
            raise ConfigError(f"data.root must point at the {self.dataset} folder")
        _check(self.clip_seconds is None or (_is_number(self.clip_seconds) and self.clip_seconds > 0),
               "data.clip_seconds", "must be a positive number of seconds", self.clip_seconds)
        _check(isinstance(self.loader_options, dict), "data.loader_options", "must be a mapping",
               self.loader_options)
