"""What a run does: the corruption it trains under, the method, the model, the loss, the
training settings, and the :class:`RunConfig` that holds them all (its hash is the run id)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from ..core import registry
from ..core.errors import ConfigError, unknown_name
from .base import Serialisable, _check, _is_number
from .data import DataConfig, FrontendConfig
from .loss_fields import check_robust_loss_fields, unread_fields

CORRUPTION_KINDS = ("none", "san", "man", "sln", "missing")


@dataclass(frozen=True)
class CorruptionConfig(Serialisable):
    """Label corruption injected into the training split (see :mod:`csu_lib.corruption`).

    ``kind``: none | san (spurious addition) | man (misassignment) | sln (weakened evidence,
    soft positive) | missing (positive removed). ``ratio``: fraction of training clips corrupted
    (exactly ``round(ratio * N)``). ``target``: uniform | similar (SAN/MAN replacement class
    drawn from the dataset's class similarity). ``profile``: uniform | concentrated (only
    ``k_classes`` source classes) | graded (per-class rates with mean ``ratio``) | audit (half the
    classes corrupted at within-class levels 0.4/0.7/1.0 x ``ratio``, the rest untouched controls).
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
        if self.kind not in CORRUPTION_KINDS:
            raise unknown_name("corruption type", self.kind, CORRUPTION_KINDS)
        _check(_is_number(self.ratio) and 0.0 <= self.ratio <= 1.0, "corruption.ratio",
               "must lie in [0, 1]", self.ratio)
        _check(self.target in ("uniform", "similar"), "corruption.target", "must be 'uniform' or 'similar'",
               self.target)
        _check(self.profile in ("uniform", "concentrated", "graded", "audit"), "corruption.profile",
               "must be 'uniform', 'concentrated', 'graded' or 'audit'", self.profile)
        _check(isinstance(self.k_classes, int) and self.k_classes >= 1, "corruption.k_classes",
               "must be a positive integer", self.k_classes)
        _check(self.graded_concentration > 0, "corruption.graded_concentration", "must be positive",
               self.graded_concentration)
        lo, hi = self.soft_range
        _check(0.0 <= lo <= hi <= 1.0, "corruption.soft_range", "must satisfy 0 <= low <= high <= 1",
               self.soft_range)

    @property
    def label(self) -> str:
        """``clean``, e.g. ``san 50%``, or ``san 50% (audit)`` for a class-dependent profile: how
        figures and tables name the condition."""
        return corruption_label(self.kind, self.ratio, self.profile)


def corruption_label(kind: str, ratio: float, profile: str = "uniform") -> str:
    """``clean`` for no corruption, else ``<kind> <ratio in %>`` (e.g. ``man 50%``), followed by
    the profile in brackets when it is not uniform (``san 50% (audit)``: the classes are
    corrupted unevenly, so the condition is not the uniform one of the same kind and ratio)."""
    if kind == "none" or ratio == 0:
        return "clean"
    return f"{kind} {round(ratio * 100)}%" + ("" if profile in (None, "uniform") else f" ({profile})")


#: The largest ``ratio`` of the audit design (its top within-class level).
AUDIT_MAX_RATIO = 0.5


def check_audit_ratio(ratio, subject: str) -> None:
    """A :class:`ConfigError` naming ``subject`` unless ``ratio`` lies in (0, 0.5], the audit
    design's range of its top within-class level (:mod:`csu_lib.corruption.audit_design`)."""
    if not _is_number(ratio) or not 0 < ratio <= AUDIT_MAX_RATIO:
        raise ConfigError(f"{subject} must lie in (0, {AUDIT_MAX_RATIO}] (the top within-class level; above "
                          f"{AUDIT_MAX_RATIO} the noisy label would be the majority of its class), got {ratio!r}")


@dataclass(frozen=True)
class MethodConfig(Serialisable):
    """A training method applied on top of the loss (see :mod:`csu_lib.training.methods`).

    - ``teacher_mask`` (Fonseca et al. 2020): per class, the top ``mask_percent`` % teacher-scored
      negatives are masked out of the loss.
    - ``label_correction`` (Braun & Gamper 2024): threshold ``threshold`` (T); ``correct`` "fn" or
      "fn+fp"; ``masking`` adds masking of low-confidence contradictions.
    - ``psl`` (Dinkel et al. 2022): the student trains on ``chunk_seconds`` chunks with targets
      ``alpha * teacher + (1 - alpha) * weak label``.
    - ``mixup_or``: 1..``max_mix`` clips mixed with random level offsets (N(0, ``level_db_std``) dB),
      labels OR-joined; ``mixup``: standard mixup, Beta(``mixup_alpha``) weights, labels interpolated.
    - ORACLES (they read the corruption record, which no real method has: reference points, not
      competitors; docs/methods.md, section 1b): ``class_oracle`` weights class c's loss by
      (1 - r_c) / mean(1 - r), r_c its true label-noise rate; ``sample_oracle`` masks exactly the
      corrupted label entries. On clean data both are the plain loss.
    ``teacher``: a teacher run directory or a score file (.npy, (n_train, C) probabilities in the
    training split's order); None trains a BCE teacher with the same data, corruption and model
    (or ``teacher_folds`` >= 2 of them, each scoring the fold it never trained on). Any method
    combines with any loss (e.g. CSU + mixup_or).
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
    #: The teacher trained when ``teacher`` is None. 1: one BCE run on the whole training split,
    #: which scores its own training clips (in-sample). K >= 2: out-of-fold: the training split is
    #: dealt into K folds (seeded by ``train.seed``), K BCE teachers are trained, teacher k on every
    #: fold but k (``DataConfig.holdout_fold``), and each clip is scored by the teacher that never
    #: trained on it (:mod:`csu_lib.training.teacher`).
    teacher_folds: int = 1

    # fields added after run ids were stored: omitted from the hash at their earlier behaviour
    HASH_OMIT = {"teacher_folds": 1}

    def __post_init__(self) -> None:
        registry.check("method", self.name)
        _check(isinstance(self.teacher_folds, int) and not isinstance(self.teacher_folds, bool)
               and self.teacher_folds >= 1, "method.teacher_folds", "must be an integer >= 1", self.teacher_folds)
        if self.teacher_folds > 1:
            _check(self.needs_teacher, "method.teacher_folds",
                   f"> 1 (an out-of-fold teacher) needs a method that learns from a teacher (teacher_mask, "
                   f"label_correction, psl), not {self.name!r}", self.teacher_folds)
            _check(self.teacher is None, "method.teacher_folds",
                   f"> 1 trains its own fold teachers; it cannot be combined with method.teacher={self.teacher!r}",
                   self.teacher_folds)
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
        """Whether the registered method learns from a teacher's scores (teacher_mask,
        label_correction, psl)."""
        return bool(registry.get("method", self.name).needs_teacher)


@dataclass(frozen=True)
class ModelConfig(Serialisable):
    name: str = "small_cnn"
    width: float = 1.0
    dropout: float = 0.2

    def __post_init__(self) -> None:
        registry.check("model", self.name)
        _check(self.width > 0, "model.width", "must be positive", self.width)
        _check(0 <= self.dropout < 1, "model.dropout", "must be in [0, 1)", self.dropout)


@dataclass(frozen=True)
class LossConfig(Serialisable):
    """``bce``, ``csu``/``csu2`` (the ``csu_*`` fields; docs/methods.md, section 1) or a
    sample-wise robust loss: ``gce``, ``sce``, ``bootstrap``, ``asl``, ``apl`` (the fields named
    after each; ``apl`` also reads ASL's focusing and margin, ``asl_*``; section 1b)."""

    name: str = "bce"
    csu_init: float = 0.0
    csu_clamp: tuple[float, float] = (-5.0, 5.0)
    csu_lr: Optional[float] = None  # None: the model's learning rate
    csu_scale: str = "full"  # "full": exp(-s) * BCE; "half": exp(-s) / 2 * BCE (1/(2 sigma^2))
    csu_class_reduction: str = "sum"  # "sum" or "mean" over classes
    #: how s is learned: "gradient" (the paper's form, what "CSU" means in the suite: s is a
    #: parameter of the optimiser with learning rate csu_lr, learned jointly with the network) or
    #: "stationary" (our variant, spelled "csu_stationary": after every epoch s is set to its
    #: closed-form optimum for the network of that moment; docs/methods.md, section 1)
    csu_fit: str = "gradient"
    #: GCE's exponent q in (0, 1]: q -> 0 is BCE, q = 1 the absolute error |y - p|
    gce_q: float = 0.7
    #: SCE = sce_alpha * BCE + sce_beta * reverse CE, in which log 0 counts as sce_log_zero (A)
    sce_alpha: float = 0.1
    sce_beta: float = 1.0
    sce_log_zero: float = -4.0
    #: bootstrapping's target b * y + (1 - b) * prediction: "soft" (the probability) or "hard"
    #: (the probability thresholded at 0.5); b = bootstrap_beta, None: BOOTSTRAP_BETA[kind];
    #: bootstrap_detach: no gradient through the prediction inside the target
    bootstrap_kind: str = "soft"
    bootstrap_beta: Optional[float] = None
    bootstrap_detach: bool = True
    #: ASL (and APL): focusing exponents of the positive and negative terms, probability margin m
    asl_gamma_pos: float = 0.0
    asl_gamma_neg: float = 4.0
    asl_margin: float = 0.05
    #: APL: the Taylor coefficients of the positive (eps1, eps2) and negative (eps1_neg) terms
    apl_eps1: float = 1.0
    apl_eps2: float = -2.5
    apl_eps1_neg: float = 0.0

    # fields added after run ids were stored: omitted from the hash at their earlier behaviour
    HASH_OMIT = {"csu_fit": "gradient", "gce_q": 0.7, "sce_alpha": 0.1, "sce_beta": 1.0, "sce_log_zero": -4.0,
                 "bootstrap_kind": "soft", "bootstrap_beta": None, "bootstrap_detach": True, "asl_gamma_pos": 0.0,
                 "asl_gamma_neg": 4.0, "asl_margin": 0.05, "apl_eps1": 1.0, "apl_eps2": -2.5, "apl_eps1_neg": 0.0}

    def hash_omitted(self) -> set:
        # a loss's id ignores the fields of the other losses (BCE ids never see csu_fit)
        return super().hash_omitted() | unread_fields(self.name)

    def __post_init__(self) -> None:
        registry.check("loss", self.name)
        _check(self.csu_fit in ("stationary", "gradient"), "loss.csu_fit", "must be 'stationary' or 'gradient'",
               self.csu_fit)
        lo, hi = self.csu_clamp
        _check(lo < hi and lo <= self.csu_init <= hi, "loss.csu_clamp",
               "must be (low, high) with low <= csu_init <= high", self.csu_clamp)
        _check(self.csu_lr is None or self.csu_lr > 0, "loss.csu_lr", "must be positive", self.csu_lr)
        _check(self.csu_scale in ("full", "half"), "loss.csu_scale", "must be 'full' or 'half'",
               self.csu_scale)
        _check(self.csu_class_reduction in ("sum", "mean"), "loss.csu_class_reduction",
               "must be 'sum' or 'mean'", self.csu_class_reduction)
        check_robust_loss_fields(self)


LR_SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass(frozen=True)
class TrainConfig(Serialisable):
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"  # "adam", "adamw" or "sgd" (with momentum)
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
    #: Learning-rate decay on a validation plateau: when ``early_stopping_patience`` epochs bring
    #: no validation-mAP gain, the learning rate is multiplied by ``lr_decay_factor`` and training
    #: goes on, at most ``lr_decays`` times; the plateau after the last decay stops the run. 0: the
    #: first plateau stops it. (Multiplies ``lr_schedule``'s factor.)
    lr_decays: int = 0
    lr_decay_factor: float = 0.1
    #: Batch-norm recalibration ("precise BN"): before every evaluation (validation, the fit loss,
    #: the stationary fit of s, the final scores) BatchNorm's running averages are replaced by the
    #: mean batch statistics of this many training clips (a fixed subset, in batches of
    #: ``batch_size``), so that an evaluation depends on the weights alone, not on the last few
    #: batches the running averages saw. Training itself is unchanged (its batch statistics and
    #: random draws are the same). 0: off, the running averages as trained.
    bn_recalibration: int = 0
    #: SGD only (``optimizer="sgd"``): the momentum factor, in [0, 1), and Nesterov momentum
    #: (needs momentum > 0). Adam and AdamW ignore both, and their run ids leave them out.
    momentum: float = 0.9
    nesterov: bool = False

    # fields added after run ids were stored: omitted from the hash at their earlier behaviour
    HASH_OMIT = {"lr_decays": 0, "lr_decay_factor": 0.1, "momentum": 0.9, "nesterov": False,
                 "bn_recalibration": 0}

    def hash_omitted(self) -> set:
        # momentum and nesterov apply to SGD only: an Adam or AdamW id never depends on them
        return super().hash_omitted() | ({"momentum", "nesterov"} if self.optimizer != "sgd" else set())

    def __post_init__(self) -> None:
        _check(isinstance(self.lr_decays, int) and not isinstance(self.lr_decays, bool) and self.lr_decays >= 0,
               "train.lr_decays", "must be an integer >= 0", self.lr_decays)
        _check(_is_number(self.lr_decay_factor) and 0 < self.lr_decay_factor < 1, "train.lr_decay_factor",
               "must be a number in (0, 1)", self.lr_decay_factor)
        _check(self.lr_decays == 0 or self.early_stopping_patience is not None, "train.lr_decays",
               "> 0 needs early_stopping_patience (the plateau that triggers a decay)", self.lr_decays)
        _check(isinstance(self.bn_recalibration, int) and not isinstance(self.bn_recalibration, bool)
               and self.bn_recalibration >= 0, "train.bn_recalibration", "must be an integer >= 0 (clips; 0: off)",
               self.bn_recalibration)
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
        _check(self.optimizer in OPTIMIZERS, "train.optimizer", "must be 'adam', 'adamw' or 'sgd'", self.optimizer)
        _check(_is_number(self.momentum) and 0 <= self.momentum < 1, "train.momentum", "must be a number in [0, 1)",
               self.momentum)
        _check(isinstance(self.nesterov, bool), "train.nesterov", "must be true or false", self.nesterov)
        _check(not (self.nesterov and self.optimizer == "sgd" and self.momentum == 0), "train.nesterov",
               "needs train.momentum > 0 (Nesterov momentum without momentum is undefined)", self.nesterov)
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
