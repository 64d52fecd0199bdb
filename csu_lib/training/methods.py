"""Compared training methods, applied on top of any loss (docs/methods.md, sections 3-5).

A :class:`Method` acts at two points of the training loop:

- :meth:`Method.train_targets` once, before training: the (corrupted) training labels in,
  the targets and an optional loss mask (N_train, C) of non-negative weights (0 = left out) out
  (teacher masking, label correction, the oracles of :mod:`csu_lib.training.oracles`);
- :meth:`Method.transform_batch` on every batch: features, targets and mask of the batch in,
  transformed ones out (mixup, pseudo strong labels' chunking).

``rows`` are indices into the training split (0..N_train-1), so per-clip teacher scores can
be looked up. Randomness comes from the ``generator`` the loop passes (seeded per epoch), so a
resumed run draws the same mixes and chunks as an uninterrupted one.

Every method registers itself under the name ``MethodConfig.name`` takes; the rules it applies
are the pure functions of :mod:`csu_lib.training.method_rules`. A method that needs a teacher
(``needs_teacher``) gets its scores from :mod:`csu_lib.training.teacher` (the teacher run is
trained first, as a dependency: :mod:`csu_lib.training.planner`). Every method is given the run's
corruption record (None on clean data): the oracles (:mod:`csu_lib.training.oracles`) train on it,
the teacher methods only count in their run record how their flags meet it.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from ..config import MethodConfig, RunConfig
from ..core import registry
from ..core.errors import ConfigError
from .method_rules import (POSITIVE, interp_mixup, label_correction, label_correction_flags, numpy_rng, or_mixup,
                           psl_chunk_layout, psl_targets, select_chunks, teacher_mask)
from .teacher import teacher_info, teacher_scores

#: The method registry: name -> :class:`Method` class.
METHODS: dict[str, type] = registry.registry("method")


def register_method(name: str):
    """Class decorator: register a :class:`Method` subclass as ``MethodConfig.name`` ``name``."""
    return registry.register("method", name)


@register_method("none")
class Method:
    """Plain training: targets are the labels, nothing is masked or mixed."""

    #: Whether the method learns from a teacher's scores on the training split.
    needs_teacher = False
    #: Whether :meth:`transform_batch` changes batches (such runs cannot be stacked in a group).
    transforms_batches = False

    @classmethod
    def from_config(cls, config: MethodConfig, **context) -> "Method":
        """The method of ``config``. ``context`` always holds ``corruption`` (the run's
        CorruptionResult, None on clean data); a teacher method also gets ``data``
        (PreparedData), ``frontend``, ``teacher_scores`` and ``teacher`` (where the teacher comes
        from, for the run record)."""
        return cls()

    def train_targets(self, labels: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        return labels, None

    def transform_batch(self, x: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor], rows: np.ndarray,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        return x, y, mask

    def summary(self) -> dict:
        """Numbers worth keeping in the run record (e.g. how many labels were masked)."""
        return {}


def _changed_entries(corruption) -> Optional[np.ndarray]:
    """(N, C) bool: the label entries the corruption changed (None without a corruption)."""
    if corruption is None:
        return None
    return np.abs(np.asarray(corruption.labels, dtype=np.float64)
                  - np.asarray(corruption.clean_labels, dtype=np.float64)) > 1e-6


class _TeacherMethod(Method):
    needs_teacher = True

    @staticmethod
    def _common(context: dict) -> dict:
        return {"corruption": context.get("corruption"), "teacher": context.get("teacher")}

    def __init__(self, scores: np.ndarray, *, corruption=None, teacher: Optional[Mapping[str, Any]] = None):
        self.scores = np.asarray(scores)
        self.corruption = corruption
        self.teacher = dict(teacher or {})
        self._summary: dict[str, Any] = {}

    def summary(self) -> dict:
        out = dict(self._summary)
        if self.teacher:
            out["teacher"] = self.teacher
        return out


@register_method("teacher_mask")
class TeacherMask(_TeacherMethod):
    """Fonseca et al. 2020: the top ``percent`` % teacher-scored negatives per class masked."""

    @classmethod
    def from_config(cls, config: MethodConfig, **context) -> "TeacherMask":
        return cls(context["teacher_scores"], config.mask_percent, **cls._common(context))

    def __init__(self, scores: np.ndarray, percent: float, **kwargs):
        super().__init__(scores, **kwargs)
        self.percent = float(percent)

    def train_targets(self, labels):
        mask = teacher_mask(labels, self.scores, self.percent)
        flagged = mask < 0.5
        neg = np.asarray(labels) < POSITIVE
        s: dict[str, Any] = {"mask_percent": self.percent, "masked": int(flagged.sum()),
                             "negatives": int(neg.sum())}
        changed = _changed_entries(self.corruption)
        if changed is not None:
            s["masked_changed"] = int((flagged & changed).sum())  # flags on entries the corruption changed
            s["changed_negatives"] = int((neg & changed).sum())
            s["masked_precision"] = s["masked_changed"] / s["masked"] if s["masked"] else float("nan")
        self._summary = s
        return labels, mask


@register_method("label_correction")
class LabelCorrection(_TeacherMethod):
    """Braun & Gamper 2024: confident contradictions corrected, weaker ones masked."""

    @classmethod
    def from_config(cls, config: MethodConfig, **context) -> "LabelCorrection":
        return cls(context["teacher_scores"], config.threshold, config.correct, config.masking, **cls._common(context))

    def __init__(self, scores: np.ndarray, threshold: float, correct: str = "fn", masking: bool = True, **kwargs):
        super().__init__(scores, **kwargs)
        self.threshold, self.correct, self.masking = float(threshold), correct, bool(masking)

    def train_targets(self, labels):
        flags = label_correction_flags(labels, self.scores, self.threshold, self.correct, self.masking)
        targets, mask = label_correction(labels, self.scores, self.threshold, self.correct, self.masking)
        s: dict[str, Any] = {"threshold": self.threshold, "correct": self.correct, "masking": self.masking,
                             **{k: int(v.sum()) for k, v in flags.items()}}
        changed = _changed_entries(self.corruption)
        if changed is not None:
            clean_pos = np.asarray(self.corruption.clean_labels) >= POSITIVE
            pos = np.asarray(labels) >= POSITIVE
            for k, v in flags.items():
                s[f"{k}_changed"] = int((v & changed).sum())
            s["corrected_fn_right"] = int((flags["corrected_fn"] & clean_pos).sum())  # now agrees with the truth
            s["corrected_fp_right"] = int((flags["corrected_fp"] & ~clean_pos).sum())
            s["changed_negatives"] = int((~pos & changed).sum())
            s["changed_positives"] = int((pos & changed).sum())
        self._summary = s
        return targets, (mask if self.masking else None)


@register_method("psl")
class PseudoStrongLabels(_TeacherMethod):
    """Dinkel et al. 2022: the student sees one random chunk per clip, with targets
    ``alpha * teacher(chunk) + (1 - alpha) * weak label``.

    ``scores``: (N_train, K, C) teacher probabilities of the K chunks ``spans`` (each padded to
    ``length`` frames, :func:`select_chunks`)."""

    transforms_batches = True

    @classmethod
    def from_config(cls, config: MethodConfig, **context) -> "PseudoStrongLabels":
        spans, length = psl_chunk_layout(int(context["data"].store.features.shape[-1]), config.chunk_seconds,
                                         context["frontend"])
        return cls(context["teacher_scores"], spans, length, config.alpha, **cls._common(context))

    def __init__(self, scores: np.ndarray, spans: Sequence[tuple[int, int]], length: int, alpha: float, **kwargs):
        super().__init__(scores, **kwargs)
        if self.scores.ndim != 3 or self.scores.shape[1] != len(spans):
            raise ConfigError(f"PSL teacher scores must be (N_train, {len(spans)} chunks, C), "
                              f"got {self.scores.shape}")
        self.spans, self.length, self.alpha = [tuple(map(int, s)) for s in spans], int(length), float(alpha)
        self._teacher_t: Optional[torch.Tensor] = None
        self._summary = {"alpha": self.alpha, "n_chunks": len(self.spans), "chunk_frames": self.length,
                         "spans": self.spans}

    def transform_batch(self, x, y, mask, rows, generator):
        if self._teacher_t is None or self._teacher_t.device != y.device:
            self._teacher_t = torch.as_tensor(self.scores, dtype=torch.float32, device=y.device)
        k = torch.randint(0, len(self.spans), (x.shape[0],), generator=generator)
        x_chunk = select_chunks(x, self.spans, self.length, k)
        rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=y.device)
        teacher = self._teacher_t[rows_t, k.to(y.device)]
        return x_chunk, psl_targets(teacher, y, self.alpha).to(y.dtype), mask


@register_method("mixup_or")
class OrMixup(Method):
    """Braun & Gamper 2024 multi-label mixup: 1..``max_mix`` sources (uniform), levels
    N(0, ``level_db_std``) dB, power-domain sum, labels OR-joined (see :func:`or_mixup`)."""

    transforms_batches = True

    @classmethod
    def from_config(cls, config: MethodConfig, **context) -> "OrMixup":
        return cls(config.max_mix, config.level_db_std)

    def __init__(self, max_mix: int = 2, level_db_std: float = 2.0):
        self.max_mix, self.level_db_std = int(max_mix), float(level_db_std)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_sources (B,), gains_db (S, B), perm (S, B)) for one batch."""
        rng = numpy_rng(generator)
        s = self.max_mix
        n_sources = rng.integers(1, s + 1, size=batch)
        gains = rng.normal(0.0, self.level_db_std, size=(s, batch)) if self.level_db_std > 0 else np.zeros((s, batch))
        perm = np.empty((s, batch), dtype=np.int64)
        perm[0] = np.arange(batch)
        for j in range(1, s):  # a partner among the other clips of the batch
            offset = rng.integers(1, batch, size=batch) if batch > 1 else np.zeros(batch, dtype=np.int64)
            perm[j] = (np.arange(batch) + offset) % batch
        return n_sources, gains, perm

    def transform_batch(self, x, y, mask, rows, generator):
        n_sources, gains, perm = self.draw(x.shape[0], generator)
        return or_mixup(x, y, mask, n_sources, gains, perm)

    def summary(self) -> dict:
        return {"max_mix": self.max_mix, "level_db_std": self.level_db_std, "domain": "mel power"}


@register_method("mixup")
class Mixup(Method):
    """Standard mixup: ``lam ~ Beta(alpha, alpha)`` per sample, a random permutation of the batch
    as partners, dB features and labels interpolated (see :func:`interp_mixup`)."""

    transforms_batches = True

    @classmethod
    def from_config(cls, config: MethodConfig, **context) -> "Mixup":
        return cls(config.mixup_alpha)

    def __init__(self, alpha: float = 0.4):
        self.alpha = float(alpha)

    def transform_batch(self, x, y, mask, rows, generator):
        rng = numpy_rng(generator)
        lam = rng.beta(self.alpha, self.alpha, size=x.shape[0])
        perm = rng.permutation(x.shape[0])
        return interp_mixup(x, y, lam, perm, mask)

    def summary(self) -> dict:
        return {"mixup_alpha": self.alpha, "domain": "dB"}


#: Methods whose ``transform_batch`` changes a batch (mixing, chunking): everything else only
#: sets targets and a loss mask once per run (tests check this against the classes).
BATCH_METHODS = frozenset(name for name, cls in METHODS.items() if cls.transforms_batches)


def build_method(config: RunConfig, data, *, run_dir: Optional[str | os.PathLike] = None) -> Method:
    """The :class:`Method` of ``config.method`` for prepared ``data``; every method is given
    ``data.corruption``. A method that needs a teacher also gets the teacher's scores
    (:func:`csu_lib.training.teacher.teacher_scores`; the teacher run next to ``run_dir`` must be
    complete: the planner trains it first)."""
    mc = config.method
    cls = registry.get("method", mc.name)
    if not cls.needs_teacher:
        return cls.from_config(mc, corruption=data.corruption)
    chunk_seconds = mc.chunk_seconds if cls.transforms_batches else None
    # Scoring with the teacher must not move the student's global RNG (it draws its dropout masks)
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        scores = teacher_scores(config, data, run_dir=run_dir, chunk_seconds=chunk_seconds)
    return cls.from_config(mc, data=data, teacher_scores=scores, frontend=config.frontend,
                           corruption=data.corruption, teacher=teacher_info(config, run_dir))
