"""The score plane (docs/methods.md, section 8): the per-sample loss the training method applies, restricted
to a class pair, as a function of that pair's two logits, with the training clips at their
actual logits -- the CSU paper's Fig. 5, in our definition.

The recipe (:func:`score_plane_panels`): per corrupted condition, the class pair the corruption
hit most (:func:`default_class_pair`); per run, the training clips' logits for the pair
(:func:`clip_logits`), the targets most of its corrupted clips train on
(:func:`typical_corrupted_targets`), the run's learned (s_a, s_b) (:func:`pair_log_sigma2`), and
the surface of its own loss over the logit grid (:func:`score_plane`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ..config import LossConfig
from ..core.errors import ConfigError, RunRecordError
from ..features import FeatureLoader
from ..losses import build_loss, reliability
from ..pipeline import load_trained, prepare_data
from ..records import RunRecord


def _pair_loss_module(loss, s_pair) -> torch.nn.Module:
    """The loss of ``loss`` (a LossConfig or a name) for two classes, in float64, holding
    ``s_pair`` when it learns a reliability."""
    cfg = loss if isinstance(loss, LossConfig) else LossConfig(name=str(loss))
    module = build_loss(cfg, 2).double()
    rel = reliability(module)
    if rel is not None:
        if s_pair is None:
            raise ValueError("the CSU score plane needs the learned s of the two classes (s_pair)")
        rel.load_log_sigma2_(np.asarray(s_pair, dtype=np.float64).reshape(2))
    return module


def score_plane(loss_name, s_pair, targets_pair, grid_a, grid_b) -> np.ndarray:
    """The per-sample training loss of a class pair over a grid of their logits (z_a, z_b).

    ``loss_name``: ``"bce"`` / ``"csu"`` or a :class:`~csu_lib.config.LossConfig` (keeps
    ``csu_scale`` / ``csu_class_reduction``).
    ``s_pair``: the learned (s_a, s_b) (ignored for BCE). ``targets_pair``: (y_a, y_b), e.g.
    the clean or the corrupted label of a clip. Returns ``surface[i, j]`` = the loss of one
    sample with logits (grid_a[i], grid_b[j]):

    - BCE: bce(z_a, y_a) + bce(z_b, y_b)
    - CSU: sum over the pair of exp(-s_c) * bce(z_c, y_c) + s_c / 2 (with ``csu_scale="half"``
      the factor is exp(-s_c)/2; with ``csu_class_reduction="mean"`` the pair's two terms are
      averaged, i.e. the training contribution times C/2).

    It is computed by the loss modules themselves (a 2-class loss of :mod:`csu_lib.losses` whose
    learned reliability holds s_pair), vectorised over the grid points with
    ``torch.vmap`` (every grid point is one batch of one sample). The other classes are left
    out: their terms do not depend on (z_a, z_b).
    """
    module = _pair_loss_module(loss_name, s_pair)
    ga = torch.as_tensor(np.asarray(grid_a, dtype=np.float64))
    gb = torch.as_tensor(np.asarray(grid_b, dtype=np.float64))
    za, zb = torch.meshgrid(ga, gb, indexing="ij")
    z = torch.stack([za.reshape(-1), zb.reshape(-1)], dim=1)  # (A*B, 2)
    y = torch.as_tensor(np.asarray(targets_pair, dtype=np.float64).reshape(1, 2)).expand_as(z)
    with torch.no_grad():
        per_point = torch.vmap(lambda zi, yi: module(zi[None], yi[None]))(z, y)
    return per_point.reshape(len(ga), len(gb)).double().numpy()


def train_logits(model, data, *, batch_size: int = 128, device="cpu") -> np.ndarray:
    """Raw logits (n_train, C) of every training clip of ``data`` (a
    :class:`~csu_lib.training.PreparedData`), in eval mode, float32 (no autocast). The model's
    training mode is restored afterwards."""
    device = torch.device(device)
    feats = FeatureLoader(data.store, device)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            rows = np.asarray(data.train_idx)
            for start in range(0, len(rows), batch_size):
                out.append(model(feats(rows[start:start + batch_size])).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def clip_logits(source, data, class_pair: tuple[int, int], *, logits: np.ndarray | None = None,
                subset: str = "pair", batch_size: int = 128, device="cpu") -> pd.DataFrame:
    """The training clips' actual logits for a class pair, with their targets and flags.

    ``source``: a :class:`RunRecord` (its ``model.pt`` is loaded), a model, or None when
    ``logits`` (n_train, C) — e.g. from :func:`train_logits` — are given (preferred: compute
    them once per run). ``data``: the run's :class:`~csu_lib.training.PreparedData`.
    Columns: ``row`` (training row), ``index`` (manifest row), ``z_a``, ``z_b``, ``y_a``,
    ``y_b`` (the targets trained on), ``clean_a``, ``clean_b`` (the clean targets),
    ``corrupted`` (the pair's targets differ from the clean ones: what the plane's loss sees),
    ``clip_corrupted`` (the clip was corrupted anywhere). ``subset="pair"`` keeps the clips
    with a positive (clean or trained-on) in either class; ``"all"`` keeps every clip.
    """
    a, b = (int(c) for c in class_pair)
    if logits is None:
        if source is None:
            raise ValueError("clip_logits needs a record, a model or a logits matrix")
        model = load_trained(source, device)[0] if isinstance(source, RunRecord) else source
        logits = train_logits(model, data, batch_size=batch_size, device=device)
    logits = np.asarray(logits)
    n_train = len(data.train_idx)
    if logits.shape[0] != n_train:
        raise ValueError(f"logits has {logits.shape[0]} rows, the training split {n_train}")
    trained = np.asarray(data.train_labels, dtype=np.float64)
    clean = (np.asarray(data.corruption.clean_labels, dtype=np.float64) if data.corruption is not None
             else trained)
    changed = (np.asarray(data.corruption.changed, dtype=bool) if data.corruption is not None
               else np.zeros(n_train, dtype=bool))
    df = pd.DataFrame({"row": np.arange(n_train), "index": np.asarray(data.train_idx),
                       "z_a": logits[:, a].astype(np.float64), "z_b": logits[:, b].astype(np.float64),
                       "y_a": trained[:, a], "y_b": trained[:, b], "clean_a": clean[:, a], "clean_b": clean[:, b]})
    df["corrupted"] = (np.abs(df["y_a"] - df["clean_a"]) > 1e-6) | (np.abs(df["y_b"] - df["clean_b"]) > 1e-6)
    df["clip_corrupted"] = changed
    if subset == "pair":
        keep = (df[["y_a", "y_b", "clean_a", "clean_b"]] > 0).any(axis=1)
        df = df[keep].reset_index(drop=True)
    elif subset != "all":
        raise ValueError(f"subset must be 'pair' or 'all', got {subset!r}")
    return df


def corruption_pairs(corruption) -> pd.DataFrame:
    """(source, target, count) of the corrupted clips of a
    :class:`~csu_lib.corruption.CorruptionResult`, most frequent first — candidates for the
    class pair of a score plane (target -1: SLN / missing, no second class involved)."""
    ch = np.asarray(corruption.changed, dtype=bool)
    df = pd.DataFrame({"source": np.asarray(corruption.source_class)[ch],
                       "target": np.asarray(corruption.target_class)[ch]})
    return (df.value_counts().rename("count").reset_index()
            .sort_values(["count", "source", "target"], ascending=[False, True, True], ignore_index=True))


def default_class_pair(data) -> tuple[int, int]:
    """The class pair a score plane follows for a corrupted run's :class:`PreparedData`:
    the most frequent (source, target) of the corruption (SAN/MAN), else -- SLN and missing
    positives touch one class -- the most frequent source class and its most similar other
    class (the manifest's similarity; the next class when there is none)."""
    if data.corruption is None:
        raise RunRecordError("the run has no corruption record: a score plane follows a corrupted class pair")
    pairs = corruption_pairs(data.corruption)
    with_target = pairs[pairs["target"] >= 0]
    if len(with_target):
        return int(with_target.iloc[0]["source"]), int(with_target.iloc[0]["target"])
    source = int(pairs.iloc[0]["source"])
    n = data.manifest.n_classes
    if data.manifest.similarity is not None:
        sim = np.array(data.manifest.similarity[source], dtype=float)
        sim[source] = -np.inf
        return source, int(np.argmax(sim))
    return source, (source + 1) % n


def typical_corrupted_targets(clips: pd.DataFrame) -> tuple[float, float]:
    """The trained-on targets (y_a, y_b) the score plane's loss is drawn for: the most common
    among the clips the pair's own corruption hit (clean positive in a, and b raised -- SAN
    gives (1, 1), MAN (0, 1)); else among the corrupted clips of class a (SLN (soft, 0),
    missing (0, 0)); else among all corrupted clips of the pair; else among all of them."""
    source = clips["clean_a"] >= 0.5
    raised_b = (clips["y_b"] - clips["clean_b"]) > 1e-6
    for mask in (source & raised_b, source & clips["corrupted"], clips["corrupted"]):
        if mask.any():
            rows = clips[mask]
            break
    else:
        rows = clips
    counts = rows.groupby(["y_a", "y_b"]).size().sort_values(ascending=False)
    y_a, y_b = counts.index[0]
    return float(y_a), float(y_b)


def pair_log_sigma2(record: RunRecord, pair: tuple[int, int]) -> Optional[np.ndarray]:
    """The learned (s_a, s_b) = log sigma^2 of a class pair in a run's selected model
    (:attr:`~csu_lib.records.RunRecord.final_log_sigma2`), None for a loss that learns none."""
    s = record.final_log_sigma2
    return None if s is None else s[list(pair)]


def check_settings(conditions: Sequence[str], logit_range: float, n_grid: int) -> np.ndarray:
    """The logit grid ``linspace(-logit_range, logit_range, n_grid)`` after checking the score-plane
    parameters (the plane follows a corrupted class pair: no clean condition)."""
    if not (isinstance(logit_range, (int, float)) and logit_range > 0 and int(n_grid) >= 3):
        raise ConfigError(f"logit_range must be > 0 and n_grid >= 3, got {logit_range!r}, {n_grid!r}")
    if "none" in conditions:
        raise ConfigError("conditions must be corrupted settings (the plane follows a corrupted class pair)")
    return np.linspace(-logit_range, logit_range, int(n_grid))


@dataclass
class Panel:
    """One run's score plane: its class pair, clips, targets, learned s of the pair and surface."""

    record: RunRecord
    pair: tuple[int, int]
    class_names: list[str]
    clips: pd.DataFrame
    targets: tuple[float, float]
    s_pair: Optional[np.ndarray]
    surface: np.ndarray

    @property
    def condition(self) -> str:
        return self.record.config.corruption.label

    def numbers(self) -> dict:
        """What the figure's JSON keeps of the panel."""
        return {"condition": self.condition, "loss": self.record.config.loss.name,
                "pair": [int(c) for c in self.pair], "class_names": self.class_names, "targets": list(self.targets),
                "s_pair": None if self.s_pair is None else [float(v) for v in self.s_pair],
                "n_clips": int(len(self.clips)), "n_corrupted": int(self.clips["corrupted"].sum()),
                "surface": self.surface.tolist()}


def named_pair(class_names: Sequence[str], pair: Sequence[str]) -> tuple[int, int]:
    """The indices of two class names; an unknown name is an error listing the classes."""
    if isinstance(pair, str) or len(pair) != 2 or pair[0] == pair[1]:
        raise ConfigError(f"class_pair must name two different classes, got {pair!r}")
    unknown = [n for n in pair if n not in class_names]
    if unknown:
        raise ConfigError(f"class_pair: unknown class(es) {unknown}; the dataset's classes are {list(class_names)}")
    return class_names.index(pair[0]), class_names.index(pair[1])


def score_plane_panels(records: Sequence[RunRecord], grid: np.ndarray, *, data_dir=None,
                       cache_dir=None, class_pair: Optional[Sequence[str]] = None) -> list[list[Panel]]:
    """The score planes of ``records`` (corrupted runs), one row per condition (in order of first
    appearance), one panel per run; the runs of a condition share its most-hit class pair, or
    ``class_pair`` (two class names) for every condition."""
    by_condition: dict[str, list[RunRecord]] = {}
    for rec in records:
        by_condition.setdefault(rec.config.corruption.label, []).append(rec)
    rows = []
    for recs in by_condition.values():
        data = prepare_data(recs[0].config, data_dir=data_dir, cache_dir=cache_dir, progress=False)
        pair = default_class_pair(data) if class_pair is None else named_pair(data.manifest.class_names, class_pair)
        names = [data.manifest.class_names[c] for c in pair]
        panels = []
        for rec in recs:
            net, _ = load_trained(rec)
            clips = clip_logits(None, data, pair, logits=train_logits(net, data))
            targets = typical_corrupted_targets(clips)
            s_pair = pair_log_sigma2(rec, pair)
            panels.append(Panel(rec, pair, names, clips, targets, s_pair,
                                score_plane(rec.config.loss, s_pair, targets, grid, grid)))
        rows.append(panels)
    return rows
