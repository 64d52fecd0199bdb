"""The embedded benchmark: a procedural 50-class environmental-sound tagging dataset.

Modelled on the ESC-FreeGen50 protocol (docs/methods.md, section 2), generated locally with no download:

- 10 acoustic families of 5 classes. Within a family the classes differ in ONE graded
  parameter (a pitch, a rate, a centre frequency, a decay time, ...), so neighbouring classes
  are genuinely confusable. The family map and a class-similarity matrix (1 - |k_i - k_j| / 5
  within a family, 0 across families) are part of the dataset.
- Each clip holds one salient event (random onset, length, level and within-class jitter of
  the graded parameter) over coloured background noise at a random SNR. ``multi_label=True``
  mixes 1..``max_events`` events of distinct classes per clip (AudioSet-like).
- Two sources per class: "recorded" (synthetic room reverb, microphone hiss, a random
  tilt filter) and "generated" (vocoder-like resynthesis: magnitude smoothed over frequency,
  phase perturbed, band-limited, magnitudes quantised). A ``source`` column says which.
- Deterministic: every clip has its own random stream ``default_rng([seed, class, clip])``, so
  the same configuration gives byte-identical 16-bit WAV files, whatever order they are made in.

The dataset is written once (atomically: to a temporary folder renamed when complete) as WAV
files plus a manifest, and reused afterwards. The sound design lives in :mod:`csu_lib.data.synth`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import BENCHMARK_PRESETS, BenchmarkConfig, DataConfig
from ..core.errors import unknown_name
from ..core.io import atomic_write_json, publish_dir, read_json
from ..core.paths import default_data_dir
from .audio import write_wav
from .manifest import Manifest
from .registry import register_dataset
from .synth import class_table, synthesize_clip


def similarity_matrix(config: BenchmarkConfig) -> np.ndarray:
    """Class similarity: 1 - |k_i - k_j| / 5 within a family, 0 across families."""
    table = class_table(config)
    fam = table["family_index"].to_numpy()
    grade = table["grade"].to_numpy()
    same = fam[:, None] == fam[None, :]
    return np.where(same, 1.0 - np.abs(grade[:, None] - grade[None, :]) / 5.0, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Dataset assembly


def benchmark_config(preset: str = "quick", **overrides) -> BenchmarkConfig:
    """A size preset (smoke / quick / paper) with optional field overrides."""
    if preset not in BENCHMARK_PRESETS:
        raise unknown_name("benchmark preset", preset, BENCHMARK_PRESETS)
    return BENCHMARK_PRESETS[preset].replace(**overrides) if overrides else BENCHMARK_PRESETS[preset]


def plan_clips(config: BenchmarkConfig) -> pd.DataFrame:
    """The clip table (ids, split, source, classes) before any audio is rendered."""
    table = class_table(config)
    n = config.clips_per_class
    n_train = max(1, int(round(config.split_fractions[0] * n)))
    n_val = max(1, int(round(config.split_fractions[1] * n)))
    n_train = min(n_train, n - n_val - 1)
    rows = []
    for c, cls in table.iterrows():
        order = np.random.default_rng([config.seed, c, 1_000_003]).permutation(n)
        split_of = {}
        for pos, clip in enumerate(order):
            split_of[clip] = "train" if pos < n_train else ("val" if pos < n_train + n_val else "test")
        counters = {"train": 0, "val": 0, "test": 0}
        sizes = {"train": n_train, "val": n_val, "test": n - n_train - n_val}
        for clip in range(n):
            split = split_of[clip]
            # within each split the first n_generated clips are "generated"; the count is rounded
            # cumulatively across classes, so a split of one clip per class alternates sources
            pos = counters[split]
            counters[split] += 1
            share = config.generated_fraction * sizes[split]
            n_generated = int(np.floor(share * (c + 1) + 0.5) - np.floor(share * c + 0.5))
            source = "generated" if pos < n_generated else "recorded"
            extra: list[int] = []
            rng = np.random.default_rng([config.seed, c, clip, 7])
            if config.multi_label:
                n_events = int(rng.integers(1, config.max_events + 1))
                others = [j for j in range(len(table)) if j != c]
                extra = [int(j) for j in rng.choice(others, size=n_events - 1, replace=False)]
            rows.append({"clip_id": f"{cls['class_name']}-{clip:03d}", "split": split, "source": source,
                         "family": cls["family"], "class_index": c, "clip_index": clip,
                         "classes": [c] + extra})
    return pd.DataFrame(rows)


def dataset_dir(config: BenchmarkConfig, data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / f"embedded-{config.hash(12)}"


def _render(config: BenchmarkConfig, row) -> np.ndarray:
    rng = np.random.default_rng([config.seed, int(row.class_index), int(row.clip_index)])
    return synthesize_clip(config, list(row.classes), row.source, rng)


def build_benchmark(config: BenchmarkConfig, data_dir: str | os.PathLike, *,
                    progress: bool = True) -> Manifest:
    """Generate the benchmark into ``data_dir`` once and return its manifest.

    The folder is named by the configuration hash; if it exists and is complete it is reused
    (nothing is re-rendered). Generation writes to a temporary folder that is renamed into
    place only when every file and the manifest are written, so an interrupted generation never
    leaves a folder that looks complete.
    """
    final = dataset_dir(config, data_dir)
    if (final / "COMPLETE").is_file():
        return load_benchmark(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    plan = plan_clips(config)
    table = class_table(config)
    names = table["class_name"].tolist()
    paths = []
    for row in tqdm(plan.itertuples(index=False), total=len(plan), disable=not progress,
                    desc=f"generating embedded benchmark ({len(plan)} clips)", unit="clip"):
        rel = Path("audio") / names[row.class_index] / f"{row.clip_id}.wav"
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        write_wav(tmp / rel, _render(config, row), config.sample_rate)
        paths.append(str(rel))
    labels = np.zeros((len(plan), len(names)), dtype=np.float32)
    for i, classes in enumerate(plan["classes"]):
        labels[i, classes] = 1.0
    clips = plan[["clip_id", "split", "source", "family"]].assign(path=paths)
    manifest = Manifest(clips=clips[["clip_id", "path", "split", "source", "family"]], labels=labels,
                        class_names=names, root=final, name="embedded",
                        similarity=similarity_matrix(config), class_families=table["family"].tolist(),
                        extra={"class_table": table.to_dict(orient="list")})
    manifest.save(tmp)
    atomic_write_json(tmp / "benchmark.json", config.to_dict())
    (tmp / "COMPLETE").write_text("all clips and the manifest are written\n")
    publish_dir(tmp, final, "COMPLETE")
    return load_benchmark(final)


def load_benchmark(directory: str | os.PathLike) -> Manifest:
    directory = Path(directory)
    manifest = Manifest.load(directory, root=directory)
    manifest.extra["benchmark"] = read_json(directory / "benchmark.json")
    return manifest


@register_dataset("embedded")
def _embedded(data: DataConfig, data_dir, progress: bool) -> Manifest:
    """The registered reader: the benchmark of ``data.benchmark``, generated once into ``data_dir``."""
    return build_benchmark(data.benchmark, data_dir or default_data_dir(), progress=progress)
