"""Supervision-unreliability injectors: SAN, MAN, SLN and missing positives (docs/methods.md, section 2).

Applied to the training split only. Every injection returns a :class:`CorruptionResult`
holding the corrupted labels, the clean labels, what changed per clip and the true per-class
corruption rates; the result is saved with the run record.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import CorruptionConfig
from ..core.errors import ConfigError
from .audit_design import audit_corruption
from .result import KIND_CODES, CorruptionResult, rates_from_labels

# ---------------------------------------------------------------------------------------------
# Injection
#
# Randomness: every draw comes from ``np.random.default_rng([seed, stream, ...])`` with one
# stream per purpose, so the same configuration gives byte-identical arrays and the streams do
# not interfere. The kind is *not* part of any stream: the same seed and ratio corrupt the same
# clips (with the same source classes) whatever the kind, which pairs the kinds clip for clip.

_STREAM_ORDER = 1  # priority order of the clips (which clips are corrupted)
_STREAM_DECISIONS = 2  # per-clip uniforms: source positive, target class, soft value
_STREAM_CLASSES = 3  # the k source classes of the "concentrated" profile
_STREAM_WEIGHTS = 4  # the per-class weights of the "graded" profile


def _n_target(config: CorruptionConfig, n_clips: int) -> int:
    return int(round(config.ratio * n_clips))


def _stream(config: CorruptionConfig, stream: int, *, ratio_dependent: bool) -> np.random.Generator:
    """Seeded generator; ``ratio_dependent`` streams mix in the ratio when nesting is off."""
    key = [int(config.seed), stream]
    if ratio_dependent and not config.nested:
        key.append(int(round(config.ratio * 1e6)))
    return np.random.default_rng(key)


def _class_label(c: int, class_names: list[str] | None) -> str:
    return f"{c} ({class_names[c]!r})" if class_names is not None else str(c)


def _check_inputs(clean: np.ndarray, config: CorruptionConfig, similarity: np.ndarray | None,
                  class_names: list[str] | None) -> np.ndarray:
    if not isinstance(config, CorruptionConfig):
        raise ConfigError(f"config must be a CorruptionConfig, got {type(config).__name__}")
    clean = np.array(clean, dtype=np.float32, copy=True)
    if clean.ndim != 2:
        raise ConfigError(f"clean labels must be a 2-D (clips, classes) array, got shape {clean.shape}")
    if clean.size and (not np.all(np.isfinite(clean)) or clean.min() < 0.0 or clean.max() > 1.0):
        raise ConfigError("clean labels must be finite and lie in [0, 1]")
    if not isinstance(config.seed, (int, np.integer)) or config.seed < 0:
        raise ConfigError(f"corruption.seed must be a non-negative integer, got {config.seed!r}")
    n_classes = clean.shape[1]
    if class_names is not None and len(class_names) != n_classes:
        raise ConfigError(f"class_names has {len(class_names)} names for {n_classes} classes")
    if similarity is not None:
        sim = np.asarray(similarity, dtype=np.float64)
        if sim.shape != (n_classes, n_classes):
            raise ConfigError(f"similarity must have shape ({n_classes}, {n_classes}), got {sim.shape}")
        if not np.all(np.isfinite(sim)) or sim.min() < 0:
            raise ConfigError("similarity must be finite and non-negative")
    return clean


def concentrated_source_classes(n_classes: int, clean: np.ndarray, config: CorruptionConfig) -> np.ndarray:
    """The ``k_classes`` source classes of the "concentrated" profile (sorted class indices).

    Drawn uniformly, by ``config.seed`` only (never by the ratio, so every ratio of a sweep
    concentrates on the same classes), among the classes with at least one clean positive.
    """
    present = np.flatnonzero((np.asarray(clean) >= 0.5).any(axis=0))
    if config.k_classes > len(present):
        raise ConfigError(f"corruption.k_classes={config.k_classes} exceeds the {len(present)} classes "
                          f"with at least one positive (of {n_classes})")
    rng = _stream(config, _STREAM_CLASSES, ratio_dependent=False)
    return np.sort(rng.choice(present, size=config.k_classes, replace=False))


def graded_class_weights(n_classes: int, config: CorruptionConfig) -> np.ndarray:
    """Fixed per-class weights of the "graded" profile: Gamma(``graded_concentration``, 1).

    A class's corruption rate is proportional to its weight (rates average to about
    ``ratio``). Smaller concentration = more uneven rates. Depends on the seed only.
    """
    rng = _stream(config, _STREAM_WEIGHTS, ratio_dependent=False)
    w = rng.gamma(config.graded_concentration, 1.0, size=n_classes)
    return np.maximum(w, 1e-12)


def _graded_allocation(pos: np.ndarray, order: np.ndarray, weights: np.ndarray,
                       n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """Sequential (house-monotone) largest-remainder allocation of corrupted clips to classes.

    Class quotas are ``h * p_c`` with ``p_c ∝ weight_c * n_c`` (so the class rate ``a_c / n_c``
    is ∝ ``weight_c``). Clip number ``h`` goes to the class with the largest deficit
    ``quota_c(h) - a_c`` among the classes that still have a free clip; a class that runs out
    of clips keeps what it has and its share is redistributed to the others in proportion to
    their ``p_c``. Within a class the clips are taken in the fixed priority ``order``.

    Because clip ``h`` is decided before clip ``h + 1`` and never revised, the clips picked for
    a smaller total are always the first ones picked for a larger total: nesting is exact.
    Returns (clip indices in allocation order, their source class).
    """
    n_clips, n_classes = pos.shape
    n_c = pos.sum(axis=0).astype(np.float64)
    share = weights * n_c
    share = share / share.sum()
    # each class's clips in global priority order
    rank = np.empty(n_clips, dtype=np.int64)
    rank[order] = np.arange(n_clips)
    queues = [np.flatnonzero(pos[:, c])[np.argsort(rank[pos[:, c]], kind="stable")] for c in range(n_classes)]
    ptr = np.zeros(n_classes, dtype=np.int64)
    remaining = n_c.copy()
    taken = np.zeros(n_clips, dtype=bool)
    alloc = np.zeros(n_classes, dtype=np.float64)
    exhausted_total = 0.0  # clips held by classes that ran out
    clips = np.empty(n_target, dtype=np.int64)
    sources = np.empty(n_target, dtype=np.int64)
    for h in range(n_target):
        active = remaining > 0
        free_seats = (h + 1) - exhausted_total
        p_active = share * active
        quota = free_seats * p_active / p_active.sum()
        deficit = np.where(active, quota - alloc, -np.inf)
        c = int(np.argmax(deficit))
        q = queues[c]
        while taken[q[ptr[c]]]:
            ptr[c] += 1
        clip = int(q[ptr[c]])
        taken[clip] = True
        remaining -= pos[clip]
        alloc[c] += 1
        newly_out = active & (remaining <= 0)
        exhausted_total += alloc[newly_out].sum()
        clips[h], sources[h] = clip, c
    return clips, sources


def _pick_weighted(weights: np.ndarray, u: float) -> int:
    cdf = np.cumsum(weights)
    j = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    if j >= len(weights) or weights[j] <= 0:  # u * total rounded onto the last edge
        j = int(np.flatnonzero(weights > 0)[-1])
    return j


def corrupt_labels(clean: np.ndarray, config: CorruptionConfig, *, similarity: np.ndarray | None = None,
                   class_names: list[str] | None = None) -> CorruptionResult:
    """Inject one kind of supervision unreliability into the (training-split) labels ``clean``.

    ``clean``: (N, C) targets in [0, 1]; a value >= 0.5 is a positive. It is never modified.
    Exactly ``round(config.ratio * N)`` clips are corrupted (N counts every clip; only clips
    with a positive are eligible). On each corrupted clip ONE positive, the *source class*, is
    acted on: SAN keeps it and sets one extra class to 1; MAN sets it to 0 and another class to
    1; SLN lowers it to ``U(soft_range)``; missing sets it to 0. SAN/MAN targets are drawn
    among the classes not positive in the clip, uniformly (``target="uniform"``) or with
    probability ∝ ``similarity[source, j] > 0`` (``target="similar"``; ``similarity`` is then
    required, e.g. a teacher's confusion matrix on real data).

    Profiles: ``uniform`` (clips drawn uniformly among the eligible), ``concentrated`` (only the
    :func:`concentrated_source_classes` can be sources), ``graded`` (per-class rates ∝
    :func:`graded_class_weights`, counts by :func:`_graded_allocation`), ``audit`` (half the
    classes corrupted at within-class levels up to ``ratio``, the others untouched controls:
    :mod:`csu_lib.corruption.audit_design`; ``ratio`` is then the top level, not a share of all clips).

    Nesting (``config.nested``): clips are taken as a prefix of one seeded priority order and
    every per-clip decision (source, target, soft value) comes from seeded per-clip uniforms;
    neither depends on the ratio, so a smaller ratio corrupts a subset of a larger one's clips,
    each identically. This holds exactly for all three profiles (graded uses a sequential,
    house-monotone variant of largest remainder). With ``nested=False`` the order and the
    decisions come from a stream that mixes in ``round(ratio * 1e6)``.
    """
    clean = _check_inputs(clean, config, similarity, class_names)
    n_clips, n_classes = clean.shape
    labels = clean.copy()
    changed = np.zeros(n_clips, dtype=bool)
    kind_code = np.zeros(n_clips, dtype=np.int8)
    source_class = np.full(n_clips, -1, dtype=np.int64)
    target_class = np.full(n_clips, -1, dtype=np.int64)

    n_target = _n_target(config, n_clips)
    if config.profile == "audit" and config.kind != "none" and config.ratio > 0:
        return audit_corruption(clean, config)
    if config.kind == "none" or n_target == 0:
        class_rate, noise_rate = rates_from_labels(clean, labels, changed, source_class)
        return CorruptionResult(config, labels, clean, changed, kind_code, source_class, target_class,
                                class_rate, noise_rate)

    needs_target = config.kind in ("san", "man")
    if needs_target and config.target == "similar" and similarity is None:
        raise ConfigError("corruption.target='similar' needs a class-similarity matrix: pass "
                          "similarity=(C, C) array (for real data, e.g. a teacher's confusion matrix)")
    sim = None if similarity is None else np.asarray(similarity, dtype=np.float64)

    pos = clean >= 0.5
    order = _stream(config, _STREAM_ORDER, ratio_dependent=True).permutation(n_clips)
    u = _stream(config, _STREAM_DECISIONS, ratio_dependent=True).random((n_clips, 3))

    allowed = pos  # positives that may be the source class
    if config.profile == "concentrated":
        chosen = concentrated_source_classes(n_classes, clean, config)
        allowed = pos & np.isin(np.arange(n_classes), chosen)[None, :]
    eligible = allowed.any(axis=1)
    n_eligible = int(eligible.sum())
    if n_target > n_eligible:
        what = ("clips with a positive" if config.profile != "concentrated"
                else f"clips with a positive in the k_classes={config.k_classes} concentrated classes")
        raise ConfigError(f"corruption.ratio={config.ratio} needs {n_target} corrupted clips of {n_clips}, "
                          f"but only {n_eligible} are eligible ({what})")

    if config.profile == "graded":
        clips, sources = _graded_allocation(pos, order, graded_class_weights(n_classes, config), n_target)
    else:
        clips = order[eligible[order]][:n_target]
        sources = np.empty(n_target, dtype=np.int64)
        for i, clip in enumerate(clips):
            cand = np.flatnonzero(allowed[clip])
            sources[i] = cand[min(int(u[clip, 0] * len(cand)), len(cand) - 1)]

    code = KIND_CODES[config.kind]
    lo, hi = config.soft_range
    for clip, src in zip(clips.tolist(), sources.tolist()):
        if needs_target:
            weights = (~pos[clip]).astype(np.float64)
            if config.target == "similar":
                weights = weights * sim[src]
            weights[src] = 0.0
            if not np.any(weights > 0):
                raise ConfigError(
                    f"no {config.target} target class for clip {clip} (source class "
                    f"{_class_label(src, class_names)}): every candidate is already positive"
                    + (" or has zero similarity" if config.target == "similar" else ""))
            tgt = _pick_weighted(weights, u[clip, 1])
            labels[clip, tgt] = 1.0
            target_class[clip] = tgt
            if config.kind == "man":
                labels[clip, src] = 0.0
        elif config.kind == "sln":
            labels[clip, src] = np.float32(lo + (hi - lo) * u[clip, 2])
        else:  # missing
            labels[clip, src] = 0.0
        changed[clip] = True
        kind_code[clip] = code
        source_class[clip] = src

    class_rate, noise_rate = rates_from_labels(clean, labels, changed, source_class)
    return CorruptionResult(config, labels, clean, changed, kind_code, source_class, target_class,
                            class_rate, noise_rate)


def corruption_summary(result: CorruptionResult, class_names: list[str] | None = None):
    """One row per class: clean positives, true rates, and how often it was source / target."""
    n_classes = result.clean_labels.shape[1]
    if class_names is None:
        class_names = [f"class_{c}" for c in range(n_classes)]
    elif len(class_names) != n_classes:
        raise ConfigError(f"class_names has {len(class_names)} names for {n_classes} classes")
    ch = result.changed
    src = result.source_class[ch & (result.source_class >= 0)]
    tgt = result.target_class[ch & (result.target_class >= 0)]
    return pd.DataFrame({
        "class": list(class_names),
        "n_clean_positive": (result.clean_labels >= 0.5).sum(axis=0).astype(np.int64),
        "class_rate": result.class_rate,
        "label_noise_rate": result.label_noise_rate,
        "n_as_source": np.bincount(src, minlength=n_classes).astype(np.int64),
        "n_as_target": np.bincount(tgt, minlength=n_classes).astype(np.int64),
    })


def man_transition_matrix(result: CorruptionResult) -> np.ndarray:
    """(C, C) int64 counts of source -> target class over the SAN/MAN-corrupted clips."""
    n_classes = result.clean_labels.shape[1]
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    sel = result.changed & (result.source_class >= 0) & (result.target_class >= 0)
    np.add.at(m, (result.source_class[sel], result.target_class[sel]), 1)
    return m


def transitions(result: CorruptionResult, class_names: list[str],
                families: list[str] | None = None) -> tuple[list[dict], int | None]:
    """The non-zero cells of :func:`man_transition_matrix` as records (source, target, count and
    their families), and how many of the transitions stay within a family (None without families)."""
    matrix = man_transition_matrix(result)
    fam = families or [None] * len(class_names)
    src, tgt = np.nonzero(matrix)
    out = [{"source": class_names[s], "target": class_names[t], "count": int(matrix[s, t]),
            "source_family": fam[s], "target_family": fam[t]} for s, t in zip(src, tgt)]
    within = int(sum(tr["count"] for tr in out if tr["source_family"] == tr["target_family"])) if families else None
    return out, within


def soft_values(result: CorruptionResult) -> tuple[np.ndarray, np.ndarray]:
    """(clips, values): the training clips whose source positive was changed and the value it got
    (SLN's soft values; 0 for a removed or moved positive)."""
    rows = np.flatnonzero(result.changed & (result.source_class >= 0))
    return rows, result.labels[rows, result.source_class[rows]].astype(float)


#: The corruption kinds an injector applies (``none`` is no corruption).
INJECTED_KINDS = ("san", "man", "sln", "missing")


def injection_configs(kinds, *, ratio: float, target: str = "uniform", profile: str = "uniform",
                      k_classes: int = 5, seed: int = 0) -> dict[str, CorruptionConfig]:
    """One :class:`CorruptionConfig` per kind of ``kinds`` (a list, or ``"san,man"``), the same
    ratio, target, class profile and seed for all (so the kinds corrupt the same clips). Every
    parameter is checked first; a bad one is a :class:`ConfigError` naming it."""
    kind_list = [k.strip() for k in kinds.split(",")] if isinstance(kinds, str) else list(kinds or [])
    if not kind_list:
        raise ConfigError(f"kinds must list at least one of {', '.join(INJECTED_KINDS)}")
    for k in kind_list:
        if k not in INJECTED_KINDS:
            raise ConfigError(f"kinds: unknown corruption type {k!r}; choose among {', '.join(INJECTED_KINDS)}")
    if len(set(kind_list)) != len(kind_list):
        raise ConfigError(f"kinds lists a corruption type twice: {kind_list}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed (corruption.seed) must be a non-negative integer, got {seed!r}")
    return {k: CorruptionConfig(kind=k, ratio=ratio, target=target, profile=profile, k_classes=k_classes, seed=seed)
            for k in kind_list}
