"""Compared training methods, applied on top of any loss (methods.md sections 3-5).

A :class:`Method` acts at two points of the training loop:

- :meth:`Method.train_targets` once, before training: the (corrupted) training labels in,
  the targets and an optional 0/1 loss mask (N_train, C) out (teacher masking, label
  correction);
- :meth:`Method.transform_batch` on every batch: features, targets and mask of the batch in,
  transformed ones out (mixup, pseudo strong labels' chunking).

``rows`` are indices into the training split (0..N_train-1), so per-clip teacher scores can
be looked up. Randomness comes from the ``generator`` the loop passes (seeded per epoch), so a
resumed run draws the same mixes and chunks as an uninterrupted one.

The rules themselves are pure functions, testable on hand-built examples:

=========================== =====================================================================
:func:`teacher_mask`        Fonseca et al. 2020: per class, the top ``percent`` % teacher-scored
                            negatives are masked out of the loss (targets unchanged).
:func:`label_correction`    Braun & Gamper 2024, eqs. (4)-(7): confident contradictions of the
                            teacher are corrected, weaker ones masked.
:func:`chunk_frames`,       Dinkel et al. 2022 (pseudo strong labels): clips cut into
:func:`select_chunks`,      non-overlapping chunks, targets ``alpha * teacher + (1 - alpha) *
:func:`psl_targets`         weak``.
:func:`or_mixup`            Braun & Gamper 2024 multi-label mixup: 1..I_max sources summed with
                            random levels, labels OR-joined.
:func:`interp_mixup`        Standard mixup (Zhang et al. 2018): features and labels interpolated.
=========================== =====================================================================

Decisions (ours where the papers are silent; all in this module):

- **Positive / negative.** A label counts as positive when it is >= 0.5, so an SLN soft positive
  (0.6-0.9) is a positive everywhere below.
- **Percentile rounding (teacher mask).** Of a class's ``n_neg`` negatives exactly
  ``k = floor(percent / 100 * n_neg)`` are flagged (never more than ``percent`` %): the ``k``
  highest-scored ones. Ties at the boundary are broken by clip order (the earlier clip of the
  training split is flagged first), so ``k`` is exact even with tied scores. The paper's
  threshold ``t_c`` is then the ``k``-th highest negative score.
- **Label correction boundaries.** The paper's inequalities are strict on both sides, which
  leaves ``q == 1 - T`` (and ``q == T``) neither corrected nor masked; we close that gap on the
  masking side: ``y=0`` is masked for ``0.5 < q <= 1 - T`` and ``y=1`` for ``T <= q < 0.5``,
  so every contradiction (teacher on the other side of 0.5) is either corrected or masked.
  ``q == 0.5`` is no contradiction. Note the paper's text swaps the names: its eq. (4)
  (``y=0 -> 1``) corrects a missing label, i.e. a *false negative* of the labels ("FN" here, the
  case its Table 2 calls "label corr FN"); eq. (5) (``y=1 -> 0``) a false positive ("FP").
  ``correct="fn"`` applies eqs. (4) and (6), ``"fn+fp"`` all four. A soft positive that is not
  corrected keeps its soft value.
- **Chunk padding (PSL).** Chunks are non-overlapping, of ``L`` frames; the last one may be
  shorter. A shorter last chunk is padded at its end to ``L`` frames with the clip's own minimum
  dB value (the floor of that clip: the log-mel of (near) silence, what zero-padding the
  waveform would give), so the teacher and the student see identically padded chunks. In the
  training method a trailing remainder shorter than half a chunk is dropped rather than
  padded (``min_last``): the centred STFT adds one frame to every clip (e.g. 51 frames for
  0.5 s), which would otherwise become a chunk of one frame and 49 padding frames.
- **Mixing domain (OR mixup).** Features are cached log-mel dB, so waveform mixing is
  approximated in the mel power domain: ``10 log10(sum_j 10^(g_j/10) 10^(x_j/10))`` (computed as a
  log-sum-exp), i.e. an incoherent sum of the sources' powers -- exact for uncorrelated sources
  in expectation, without the cross terms a waveform sum has. Every source (the clip itself
  included) gets its own level offset ``g_j ~ N(0, level_db_std)`` dB, as in Braun & Gamper's
  Algorithm 1 (random source levels), so an unmixed clip is level-augmented. The mixture is not
  renormalised, as a waveform sum is not (two sources at 0 dB are +3.01 dB louder). Labels are OR-joined (element-wise max); masks are AND-joined (element-wise min: an
  element masked in any source stays masked).
- **Mixing domain (standard mixup).** Interpolated in dB, as spectrogram mixup usually is
  (``lam * x_i + (1 - lam) * x_j``), one ``lam ~ Beta(a, a)`` per sample; labels interpolated
  with the same ``lam``; masks AND-joined.
- **Partners.** OR mixup: every extra source of sample ``i`` is a clip of the batch drawn
  uniformly among the *other* clips, independently per sample and source (a clip may serve as a
  partner of several samples). Standard mixup: a random permutation of the batch (a clip may
  meet itself, as in the usual implementation).
- **Randomness.** Beta and normal draws come from a numpy generator seeded by one draw of the
  loop's torch generator, so every batch transform is a function of (seed, epoch, step).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np
import torch

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .config import RunConfig
    from .records import RunRecord

#: A label is a positive when it is at least this (soft SLN positives included).
POSITIVE = 0.5


# =============================================================================================
# Rules (pure functions)


def _as_pair(labels, scores, name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 2 or scores.shape != labels.shape:
        raise ConfigError(f"labels and {name} must both be (N, C) arrays of one shape, got {labels.shape} and "
                          f"{scores.shape}")
    return labels, scores


def n_flagged(n_negatives: int, percent: float) -> int:
    """How many of ``n_negatives`` the teacher mask flags at ``percent``: ``floor(percent/100 * n)``
    (a tiny tolerance keeps e.g. 20 % of 10 at exactly 2 despite floating point)."""
    if not 0 <= percent <= 100:
        raise ConfigError(f"percent must lie in [0, 100], got {percent!r}")
    return int(math.floor(n_negatives * float(percent) / 100.0 + 1e-9))


def teacher_mask(labels, scores, percent: float) -> np.ndarray:
    """Fonseca et al. 2020 loss mask: (N, C) float32, 0 for flagged elements, 1 elsewhere.

    Per class c, among the clips with ``labels[:, c] < 0.5`` (the negatives), the
    ``floor(percent/100 * n_neg)`` with the highest teacher ``scores[:, c]`` are flagged (ties
    broken by clip order, earlier first). Positives are never masked; the targets are unchanged
    (the mask removes the flagged negatives' whole BCE term, which for a negative is the
    negative term the paper masks).
    """
    labels, scores = _as_pair(labels, scores)
    mask = np.ones(labels.shape, dtype=np.float32)
    for c in range(labels.shape[1]):
        neg = np.flatnonzero(labels[:, c] < POSITIVE)
        k = n_flagged(len(neg), percent)
        if k == 0:
            continue
        order = np.argsort(-scores[neg, c], kind="stable")  # highest first, ties by clip order
        mask[neg[order[:k]], c] = 0.0
    return mask


def label_correction_flags(labels, scores, threshold: float, correct: str = "fn",
                           masking: bool = True) -> dict[str, np.ndarray]:
    """The four (N, C) boolean flag arrays of :func:`label_correction`:
    ``corrected_fn`` (0 -> 1), ``corrected_fp`` (1 -> 0), ``masked_fn`` (y=0 masked),
    ``masked_fp`` (y=1 masked). Flags of a disabled option are all False."""
    labels, q = _as_pair(labels, scores)
    if not 0 < threshold < 0.5:
        raise ConfigError(f"threshold T must lie in (0, 0.5), got {threshold!r}")
    if correct not in ("fn", "fn+fp"):
        raise ConfigError(f"correct must be 'fn' or 'fn+fp', got {correct!r}")
    pos = labels >= POSITIVE
    neg = ~pos
    fp = correct == "fn+fp"
    none = np.zeros(labels.shape, dtype=bool)
    return {
        "corrected_fn": neg & (q > 1 - threshold),                                   # eq. (4)
        "corrected_fp": pos & (q < threshold) if fp else none,                      # eq. (5)
        "masked_fn": neg & (q > 0.5) & (q <= 1 - threshold) if masking else none,   # eq. (6)
        "masked_fp": pos & (q < 0.5) & (q >= threshold) if (masking and fp) else none,  # eq. (7)
    }


def label_correction(labels, scores, threshold: float, correct: str = "fn",
                     masking: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Braun & Gamper 2024, eqs. (4)-(7), with teacher probabilities ``scores`` = q:

    - ``y=0`` and ``q > 1-T``: target 1 (missing label corrected; always);
    - ``y=1`` and ``q < T``: target 0 (false label corrected; ``correct="fn+fp"`` only);
    - with ``masking``: ``y=0`` and ``0.5 < q <= 1-T`` masked; with ``"fn+fp"`` also ``y=1`` and
      ``T <= q < 0.5`` masked.

    ``y`` is positive when >= 0.5 (soft labels). Returns (targets float32, mask float32 of 0/1;
    all ones when nothing is masked).
    """
    flags = label_correction_flags(labels, scores, threshold, correct, masking)
    targets = np.asarray(labels, dtype=np.float32).copy()
    targets[flags["corrected_fn"]] = 1.0
    targets[flags["corrected_fp"]] = 0.0
    mask = np.ones(targets.shape, dtype=np.float32)
    mask[flags["masked_fn"] | flags["masked_fp"]] = 0.0
    return targets, mask


def psl_targets(teacher_chunk_probs, weak, alpha: float):
    """Pseudo-strong-label targets ``alpha * teacher + (1 - alpha) * weak`` (numpy or torch):
    alpha 1 is PSL (teacher only), 0.5 Dinkel's teacher-student baseline, 0 the weak labels."""
    if not 0 <= alpha <= 1:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha!r}")
    return alpha * teacher_chunk_probs + (1.0 - alpha) * weak


def chunk_frames(n_frames: int, chunk_frames: int, *, min_last: int = 1) -> list[tuple[int, int]]:
    """Non-overlapping ``(start, stop)`` frame spans of ``chunk_frames`` covering ``n_frames``;
    the last span is shorter when ``chunk_frames`` does not divide ``n_frames`` (it is padded
    later, see :func:`select_chunks`). A last span shorter than ``min_last`` frames is dropped
    (never the only one). ``chunk_frames >= n_frames`` gives the single span ``(0, n_frames)``."""
    if n_frames < 1 or chunk_frames < 1:
        raise ConfigError(f"n_frames and chunk_frames must be positive, got {n_frames} and {chunk_frames}")
    spans = [(s, min(s + chunk_frames, n_frames)) for s in range(0, n_frames, chunk_frames)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < min_last:
        spans.pop()
    return spans


def psl_chunk_layout(n_frames: int, chunk_seconds: float, frontend) -> tuple[list[tuple[int, int]], int]:
    """The chunks PSL uses for clips of ``n_frames`` frames: ``(spans, length)``.

    ``length = round(chunk_seconds * sample_rate / hop_length)`` frames (at most ``n_frames``);
    a trailing remainder shorter than half a chunk is dropped (see the module notes)."""
    length = max(1, int(round(chunk_seconds * frontend.sample_rate / frontend.hop_length)))
    spans = chunk_frames(n_frames, length, min_last=(length + 1) // 2)
    return spans, min(length, n_frames)


def select_chunks(x: torch.Tensor, spans: Sequence[tuple[int, int]], length: int,
                  chunk: torch.Tensor) -> torch.Tensor:
    """Chunk ``chunk[b]`` (an index into ``spans``) of every clip of ``x`` (B, M, T): (B, M, length).

    A span shorter than ``length`` is padded at its end with that clip's minimum value (the
    clip's dB floor)."""
    b, m, t = x.shape
    bounds = torch.as_tensor(spans, dtype=torch.long, device=x.device)[chunk.to(x.device)]  # (B, 2)
    idx = bounds[:, :1] + torch.arange(length, device=x.device)[None, :]  # (B, L)
    valid = idx < bounds[:, 1:]
    picked = x.gather(2, idx.clamp(max=t - 1)[:, None, :].expand(b, m, length))
    floor = x.amin(dim=(1, 2))[:, None, None]
    return torch.where(valid[:, None, :], picked, floor)


def or_mixup(x_db: torch.Tensor, y: torch.Tensor, mask: Optional[torch.Tensor], n_sources, gains_db,
             perm) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Multi-label mixup with OR-joined labels (Braun & Gamper 2024), in the mel power domain.

    ``x_db`` (B, M, T) log-mel dB; ``y``, ``mask`` (B, C) (mask may be None). ``perm`` (S, B):
    source j of sample i is clip ``perm[j, i]`` of the batch; ``n_sources`` (B,): sample i uses
    sources ``0 .. n_sources[i]-1`` (1..S); ``gains_db`` (S, B): the level offset of each source.
    Output features ``10 log10(sum_j 10^((x_j + g_j)/10))`` (incoherent power sum), labels the
    element-wise max over the used sources, mask the element-wise min.
    """
    perm = torch.as_tensor(perm, dtype=torch.long, device=x_db.device)
    if perm.ndim != 2 or perm.shape[1] != x_db.shape[0]:
        raise ConfigError(f"perm must be (n_sources_max, batch) = (S, {x_db.shape[0]}), got {tuple(perm.shape)}")
    s = perm.shape[0]
    n_sources = torch.as_tensor(n_sources, dtype=torch.long, device=x_db.device)
    gains = torch.as_tensor(gains_db, dtype=x_db.dtype, device=x_db.device)
    if gains.shape != perm.shape:
        raise ConfigError(f"gains_db must have the shape of perm {tuple(perm.shape)}, got {tuple(gains.shape)}")
    if n_sources.shape != (x_db.shape[0],) or int(n_sources.min()) < 1 or int(n_sources.max()) > s:
        raise ConfigError(f"n_sources must be (batch,) integers in 1..{s}, got {n_sources.tolist()}")
    used = torch.arange(s, device=x_db.device)[:, None] < n_sources[None, :]  # (S, B)
    scale = 10.0 / math.log(10.0)
    sources = x_db[perm] + gains[:, :, None, None]  # (S, B, M, T) in dB
    sources = sources.masked_fill(~used[:, :, None, None], float("-inf"))
    x_out = scale * torch.logsumexp(sources / scale, dim=0)
    y_out = y[perm].masked_fill(~used[:, :, None], float("-inf")).amax(dim=0)
    m_out = None
    if mask is not None:
        m_out = mask[perm].masked_fill(~used[:, :, None], float("inf")).amin(dim=0)
    return x_out, y_out, m_out


def interp_mixup(x_db: torch.Tensor, y: torch.Tensor, lam, perm,
                 mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Standard mixup: ``x = lam * x + (1 - lam) * x[perm]`` on the dB features, the same for the
    labels; ``lam`` a scalar or one value per sample (B,); masks AND-joined (element-wise min)."""
    perm = torch.as_tensor(perm, dtype=torch.long, device=x_db.device)
    lam = torch.as_tensor(lam, dtype=x_db.dtype, device=x_db.device)
    if lam.ndim == 0:
        lam = lam.expand(x_db.shape[0])
    x_out = lam[:, None, None] * x_db + (1 - lam[:, None, None]) * x_db[perm]
    y_out = lam[:, None].to(y.dtype) * y + (1 - lam[:, None].to(y.dtype)) * y[perm]
    m_out = None if mask is None else torch.minimum(mask, mask[perm])
    return x_out, y_out, m_out


def _numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator drawn from the loop's torch generator (Beta and normal draws need one;
    the draw keeps everything a function of the loop's per-epoch seed)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return np.random.default_rng(seed)


# =============================================================================================
# Methods


class Method:
    """Plain training: targets are the labels, nothing is masked or mixed."""

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


class TeacherMask(_TeacherMethod):
    """Fonseca et al. 2020: the top ``percent`` % teacher-scored negatives per class masked."""

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


class LabelCorrection(_TeacherMethod):
    """Braun & Gamper 2024: confident contradictions corrected, weaker ones masked."""

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


class PseudoStrongLabels(_TeacherMethod):
    """Dinkel et al. 2022: the student sees one random chunk per clip, with targets
    ``alpha * teacher(chunk) + (1 - alpha) * weak label``.

    ``scores``: (N_train, K, C) teacher probabilities of the K chunks ``spans`` (each padded to
    ``length`` frames, :func:`select_chunks`)."""

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


class OrMixup(Method):
    """Braun & Gamper 2024 multi-label mixup: 1..``max_mix`` sources (uniform), levels
    N(0, ``level_db_std``) dB, power-domain sum, labels OR-joined (see :func:`or_mixup`)."""

    def __init__(self, max_mix: int = 2, level_db_std: float = 2.0):
        self.max_mix, self.level_db_std = int(max_mix), float(level_db_std)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n_sources (B,), gains_db (S, B), perm (S, B)) for one batch."""
        rng = _numpy_rng(generator)
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


class Mixup(Method):
    """Standard mixup: ``lam ~ Beta(alpha, alpha)`` per sample, a random permutation of the batch
    as partners, dB features and labels interpolated (see :func:`interp_mixup`)."""

    def __init__(self, alpha: float = 0.4):
        self.alpha = float(alpha)

    def transform_batch(self, x, y, mask, rows, generator):
        rng = _numpy_rng(generator)
        lam = rng.beta(self.alpha, self.alpha, size=x.shape[0])
        perm = rng.permutation(x.shape[0])
        return interp_mixup(x, y, lam, perm, mask)

    def summary(self) -> dict:
        return {"mixup_alpha": self.alpha, "domain": "dB"}


#: Methods whose ``transform_batch`` changes a batch (mixing, chunking): everything else only
#: sets targets and a loss mask once per run (tests check this against the classes).
BATCH_METHODS = frozenset({"psl", "mixup_or", "mixup"})


def build_method(config, data, *, run_dir=None, cache_dir=None, progress: bool = True) -> Method:
    """The :class:`Method` of ``config.method`` for prepared ``data`` (a teacher is trained or
    loaded here when the method needs one, see :mod:`csu_lib.teacher`)."""
    mc = config.method
    if mc.name == "none":
        return Method()
    if mc.name == "mixup_or":
        return OrMixup(mc.max_mix, mc.level_db_std)
    if mc.name == "mixup":
        return Mixup(mc.mixup_alpha)
    if mc.name not in ("teacher_mask", "label_correction", "psl"):
        raise ConfigError(f"no implementation of method {mc.name!r}")
    from . import teacher as T

    chunk_seconds = mc.chunk_seconds if mc.name == "psl" else None
    # Training (or scoring with) the teacher must not move the student's global RNG: the student
    # draws the same dropout masks whether its teacher was trained now or found complete.
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        scores = T.teacher_scores(config, data, run_dir=run_dir, cache_dir=cache_dir, progress=progress,
                                  chunk_seconds=chunk_seconds)
    common = dict(corruption=data.corruption, teacher=T.teacher_info(config, run_dir))
    if mc.name == "teacher_mask":
        return TeacherMask(scores, mc.mask_percent, **common)
    if mc.name == "label_correction":
        return LabelCorrection(scores, mc.threshold, mc.correct, mc.masking, **common)
    spans, length = psl_chunk_layout(int(data.store.features.shape[-1]), mc.chunk_seconds, config.frontend)
    return PseudoStrongLabels(scores, spans, length, mc.alpha, **common)


# =============================================================================================
# Comparison study helpers (notebooks/comparison.ipynb): method specs, configs, tables.

def parse_method_spec(spec: str) -> tuple[str, str]:
    """``"bce"`` -> ("bce", "none"); ``"csu+mixup_or"`` -> ("csu", "mixup_or"); a bare method
    name (``"teacher_mask"``) means BCE with that method."""
    from .config import METHODS
    from .losses import LOSSES

    text = str(spec).strip()
    loss, plus, method = text.partition("+")
    if not plus:
        loss, method = (text, "none") if text in LOSSES else ("bce", text)
    if loss not in LOSSES or method not in METHODS:
        raise ConfigError(f"method {spec!r}: write '<loss>' or '<loss>+<method>' with a loss in "
                          f"{list(LOSSES)} and a method in {list(METHODS)}")
    return loss, method


def method_spec(loss: str, method: str) -> str:
    """``bce``, ``csu+mixup_or``, ... (the loss, plus the method unless it is ``none``): the
    inverse of :func:`parse_method_spec`."""
    return loss if method in (None, "none") else f"{loss}+{method}"


def method_label(config: "RunConfig") -> str:
    """The :func:`method_spec` of a run."""
    return method_spec(config.loss.name, config.method.name)


def comparison_configs(profile: str, condition: str, methods: Sequence[str], seeds: Sequence[int], *,
                       method_options: Optional[Mapping[str, Any]] = None,
                       **run_config_kwargs) -> dict[str, list["RunConfig"]]:
    """``{method spec: [one RunConfig per seed]}`` on one corruption ``condition`` (e.g.
    ``"san:0.5"``). ``method_options``: MethodConfig field overrides for every method (e.g.
    ``{"mask_percent": 2}``); other keywords go to :func:`csu_lib.profiles.run_config`."""
    from .config import MethodConfig
    from .profiles import run_config
    from .study import parse_condition

    corruption = parse_condition(condition)
    if "name" in dict(method_options or {}):
        raise ConfigError("method_options cannot set 'name'; name the method in methods ('<loss>+<method>')")
    if not list(methods):
        raise ConfigError("methods must name at least one method, e.g. ['bce', 'csu+mixup_or']")
    if not list(seeds):
        raise ConfigError("seeds must hold at least one seed")
    out: dict[str, list] = {}
    for spec in methods:
        loss, name = parse_method_spec(spec)
        out[str(spec)] = [run_config(profile, loss=loss, seed=int(seed), corruption=corruption, **run_config_kwargs)
                          .replace(method=MethodConfig(name=name, **dict(method_options or {})))
                          for seed in seeds]
    return out


def mask_sweep_configs(profile: str, condition: str, percents: Sequence[float], seeds: Sequence[int], *,
                       loss: str = "bce", method_options: Optional[Mapping[str, Any]] = None,
                       **run_config_kwargs) -> dict[float, list["RunConfig"]]:
    """``{percent: [RunConfig per seed]}`` for Fonseca's performance-vs-%-discarded sweep of
    ``teacher_mask``; 0 % is the plain ``loss`` run (no teacher), the sweep's reference point."""
    options = {k: v for k, v in dict(method_options or {}).items() if k != "mask_percent"}
    out: dict[float, list] = {}
    for p in sorted({0.0, *(float(p) for p in percents)}):
        spec = loss if p == 0 else f"{loss}+teacher_mask"
        opts = {} if p == 0 else {**options, "mask_percent": p}
        out[p] = comparison_configs(profile, condition, [spec], seeds, method_options=opts,
                                    **run_config_kwargs)[spec]
    return out


def unique_configs(*groups: Mapping[Any, Sequence["RunConfig"]]) -> list["RunConfig"]:
    """The configs of all groups, each run id once, in first-seen order."""
    seen: dict[str, Any] = {}
    for group in groups:
        for configs in group.values():
            for c in configs:
                seen.setdefault(c.run_id, c)
    return list(seen.values())


def group_records(groups: Mapping[Any, Sequence["RunConfig"]],
                  records: Sequence["RunRecord"]) -> dict[Any, list["RunRecord"]]:
    """The records of each group's configs (matched by run id)."""
    by_id = {r.config.run_id: r for r in records}
    missing = [c.run_id for cs in groups.values() for c in cs if c.run_id not in by_id]
    if missing:
        from .errors import RunRecordError

        raise RunRecordError(f"no record for run(s) {missing[:5]}")
    return {k: [by_id[c.run_id] for c in cs] for k, cs in groups.items()}


#: The counts of the methods' summaries that :func:`comparison_table` carries (means over seeds):
#: flags of the teacher, and -- with a known corruption -- how many hit entries it had changed.
SUMMARY_COUNTS = ("masked", "masked_changed", "masked_precision", "changed_negatives", "changed_positives",
                  "corrected_fn", "corrected_fn_changed", "corrected_fn_right", "corrected_fp",
                  "corrected_fp_changed", "corrected_fp_right", "masked_fn", "masked_fn_changed", "masked_fp",
                  "masked_fp_changed")


def comparison_table(groups: Mapping[Any, Sequence["RunRecord"]], *, metric: str = "mAP", split: str = "test",
                     key: str = "method", level: float = 0.95) -> "pd.DataFrame":
    """One row per group: ``<key>``, ``loss``, ``method_name``, ``n`` (runs = seeds), ``mean``,
    ``lo``, ``hi`` (Student-t ``level`` CI over seeds of ``split`` ``metric``), ``std``, the means
    of the other metrics (``mAP``, ``mAUC``, ``d_prime``, ``lwlrap``), the seeds, and the means of
    the method summary counts of :data:`SUMMARY_COUNTS` present in every run of the group
    (e.g. ``masked``, ``masked_precision``), prefixed ``method.``."""
    import pandas as pd

    from .probes import mean_ci

    rows = []
    for label, recs in groups.items():
        if not recs:
            continue
        values = np.array([r.final_metrics[split][metric] for r in recs], dtype=np.float64)
        mean, lo, hi = mean_ci(values, level=level)
        c = recs[0].config
        row: dict[str, Any] = {key: label, "loss": c.loss.name, "method_name": c.method.name, "n": len(recs),
                               "metric": f"{split}.{metric}", "mean": float(mean), "lo": float(lo), "hi": float(hi),
                               "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
        for m in ("mAP", "mAUC", "d_prime", "lwlrap"):
            row[m] = float(np.mean([r.final_metrics[split][m] for r in recs]))
        row["seeds"] = [int(r.config.train.seed) for r in recs]
        summaries = [r.summary.get("method", {}) or {} for r in recs]
        for k in SUMMARY_COUNTS:
            vals = [s.get(k) for s in summaries]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                row[f"method.{k}"] = float(np.mean(vals))
        rows.append(row)
    return pd.DataFrame(rows)
