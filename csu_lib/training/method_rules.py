"""The rules of the compared methods (docs/methods.md, sections 3-5): pure functions, testable on
hand-built examples; :mod:`csu_lib.training.methods` applies them in the training loop.

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
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.errors import ConfigError


#: A label is a positive when it is at least this (soft SLN positives included).
POSITIVE = 0.5


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


def numpy_rng(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator drawn from the loop's torch generator (Beta and normal draws need one;
    the draw keeps everything a function of the loop's per-epoch seed)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return np.random.default_rng(seed)
