"""Small dataset folders in every supported real layout, with generated audio a model can learn
(each class a tone of its own frequency in noise; a multi-label clip mixes its classes' tones):
ESC-FreeGen50 with published noisy label files of all four kinds, ESC-50, FSD50K, AudioSet
segment CSVs and a generic CSV. Each builder returns the data spec of its folder (what
``csu figures --data`` and a study file's ``data:`` take)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
SECONDS = 0.5
CLASSES = ["dog", "rooster", "rain", "sea_waves", "crying_baby", "clock_tick"]
SPLIT_SIZES = {"train": 8, "val": 3, "test": 3}  # clips per class
NOISE_RATIOS = (0.1, 0.3, 0.5)


def _tone(classes: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * SECONDS)) / SR
    x = 0.05 * rng.standard_normal(len(t))
    for c in classes:
        x += 0.3 * np.sin(2 * np.pi * (300.0 * (c + 1) + rng.uniform(-20, 20)) * t)
    return (x / max(1.0, np.abs(x).max())).astype(np.float32)


def _write(path: Path, classes: list[int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), _tone(classes, seed), SR, subtype="PCM_16")


def _clips(multi_label: bool = False):
    """(split, index, [classes]) of every clip; every third training clip of a multi-label set
    also holds the next class."""
    n = 0
    for split, per in SPLIT_SIZES.items():
        for c in range(len(CLASSES)):
            for k in range(per):
                extra = [(c + 1) % len(CLASSES)] if multi_label and k % 3 == 0 else []
                yield split, n, [c, *extra]
                n += 1


def _spec(dataset: str, root: Path, **loader_options) -> dict:
    spec = {"dataset": dataset, "root": str(root), "clip_seconds": SECONDS}
    if loader_options:
        spec["loader_options"] = loader_options
    return spec


def csv_folder(root: Path) -> dict:
    lines = ["filename,labels,split"]
    for split, n, classes in _clips(multi_label=True):
        _write(root / "audio" / f"clip{n:03d}.wav", classes, n)
        lines.append(f"audio/clip{n:03d}.wav,{';'.join(CLASSES[c] for c in classes)},{split}")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    return _spec("csv", root / "meta.csv")


def esc50_folder(root: Path) -> dict:
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    fold_of = {"train": (1, 2, 3), "val": (4,), "test": (5,)}
    for split, n, (c,) in _clips():
        fold = fold_of[split][n % len(fold_of[split])]
        name = f"{fold}-{1000 + n}-A-{c}.wav"
        _write(root / "audio" / name, [c], n)
        rows.append(f"{name},{fold},{c},{CLASSES[c]},False,{1000 + n},A")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return _spec("esc50", root)


def freegen50_folder(root: Path) -> dict:
    """With ``labels/{flip,additive,soft,remove}_error_<r>/train.json`` for r in NOISE_RATIOS,
    each corrupting round(r * n_train) training clips as the published files do."""
    records: dict[str, list] = {s: [] for s in SPLIT_SIZES}
    for split, n, (c,) in _clips():
        path = f"audios/{CLASSES[c]}/{CLASSES[c]}-{split}{n:03d}.wav"
        _write(root / path, [c], n)
        records[split].append({"audio_path": path, "label": _onehot(c), "original_labels": [CLASSES[c]]})
    for split, recs in records.items():
        _json(root / "labels" / "original" / f"{split}.json", {"data": recs, "class_names": CLASSES})
    _json(root / "labels" / "label_mapping.json", {str(j): name for j, name in enumerate(CLASSES)})
    train = records["train"]
    for ratio in NOISE_RATIOS:
        rng = np.random.default_rng(int(ratio * 100))
        chosen = set(rng.choice(len(train), size=int(round(ratio * len(train))), replace=False).tolist())
        for kind in ("flip", "additive", "soft", "remove"):
            noisy = []
            for i, rec in enumerate(train):
                c = int(np.argmax(rec["label"]))
                out = {"audio_path": rec["audio_path"], "label": list(rec["label"])}
                if i in chosen:
                    other = int((c + 1 + rng.integers(len(CLASSES) - 1)) % len(CLASSES))
                    if kind == "flip":
                        out.update(label=_onehot(other), true_label=rec["label"], error_injected=True)
                    elif kind == "additive":
                        out.update(label=[max(a, b) for a, b in zip(rec["label"], _onehot(other))],
                                   true_label=rec["label"], additive_noise_injected=True)
                    elif kind == "soft":
                        lab = list(rec["label"])
                        lab[c] = float(np.round(rng.uniform(0.6, 0.9), 3))
                        out.update(label=lab, original_label=CLASSES[c])
                    else:
                        out.update(label=[0.0] * len(CLASSES), true_label=rec["label"], remove_noise_injected=True)
                noisy.append(out)
            _json(root / "labels" / f"{kind}_error_{ratio:.2f}" / "train.json", {"data": noisy, "class_names": CLASSES})
    return {**_spec("freegen50", root), "published_noise": True}


def fsd50k_folder(root: Path) -> dict:
    gt = root / "FSD50K.ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    (gt / "vocabulary.csv").write_text("".join(f"{j},{name},/m/{j:05d}\n" for j, name in enumerate(CLASSES)))
    dev, ev = ["fname,labels,mids,split"], ["fname,labels,mids"]
    for split, n, classes in _clips(multi_label=True):
        names, mids = ",".join(CLASSES[c] for c in classes), ",".join(f"/m/{c:05d}" for c in classes)
        folder = "FSD50K.eval_audio" if split == "test" else "FSD50K.dev_audio"
        _write(root / folder / f"{1000 + n}.wav", classes, n)
        if split == "test":
            ev.append(f'{1000 + n},"{names}","{mids}"')
        else:
            dev.append(f'{1000 + n},"{names}","{mids}",{split}')
    (gt / "dev.csv").write_text("\n".join(dev) + "\n")
    (gt / "eval.csv").write_text("\n".join(ev) + "\n")
    return _spec("fsd50k", root)


def audioset_folder(root: Path) -> dict:
    """Segment CSVs (balanced train, a validation CSV, eval) and one cut 1 s file per segment."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f'{j},/m/{j:05d},"{name}"\n' for j, name in enumerate(CLASSES)))
    files = {"train": "balanced_train_segments.csv", "val": "val_segments.csv", "test": "eval_segments.csv"}
    tables = {s: ["# YTID, start_seconds, end_seconds, positive_labels"] for s in files}
    for split, n, classes in _clips(multi_label=True):
        ytid = f"yt{n:09d}"
        _write(root / "audio" / f"{ytid}.wav", classes, n)
        tables[split].append(f'{ytid}, 0.000, 1.000, "{",".join(f"/m/{c:05d}" for c in classes)}"')
    for split, name in files.items():
        (root / name).write_text("\n".join(tables[split]) + "\n")
    return _spec("audioset", root, csv_files={name: split for split, name in files.items()})


def _onehot(c: int) -> list[float]:
    v = [0.0] * len(CLASSES)
    v[c] = 1.0
    return v


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


BUILDERS = {"freegen50": freegen50_folder, "esc50": esc50_folder, "fsd50k": fsd50k_folder,
            "audioset": audioset_folder, "csv": csv_folder}
