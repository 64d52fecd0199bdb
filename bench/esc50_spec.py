"""Write a data spec for a local copy of ESC-50 as the public snapshot lays it out (``esc50.csv``
beside ``audio/audio/16000/*.wav``: 2,000 clips of 5 s at 16 kHz, folds 1-5), so that every
figure, ``csu data check`` and a study can train on the real recordings. Nothing is downloaded;
the audio stays where it is (ESC-50 is CC BY-NC: never commit it or anything derived from it
but numbers and figures).

    PYTHONPATH=. python bench/esc50_spec.py SNAPSHOT_DIR [--out esc50.yaml] [--val-fold 4] [--test-fold 5]
    .venv/bin/csu data check esc50.yaml
    .venv/bin/csu figures --profile quick --data esc50.yaml --runs-dir runs/esc50 --fig-dir figures/esc50

``SNAPSHOT_DIR`` is any folder above ``esc50.csv`` (e.g. where ``git archive`` of the snapshot was
unpacked); the script finds the table and the 16 kHz audio folder under it and stops with a clear
message when either is missing or ambiguous. See docs/data.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import yaml

from csu_lib.core.io import atomic_write_text


def find_layout(snapshot: Path) -> tuple[Path, str, str]:
    """(root, meta_file, audio_dir) of the ESC-50 copy under ``snapshot``."""
    tables = sorted(p for p in snapshot.rglob("esc50.csv") if p.is_file())
    if len(tables) != 1:
        raise SystemExit(f"{snapshot}: expected one esc50.csv under it, found {len(tables)}"
                         + "".join(f"\n  {t}" for t in tables[:5]))
    root = tables[0].parent
    audio = sorted(p for p in root.rglob("*") if p.is_dir() and p.name == "16000" and any(p.glob("*.wav")))
    if not audio:
        audio = sorted(p for p in root.rglob("*") if p.is_dir() and any(p.glob("*.wav")))
    if len(audio) != 1:
        raise SystemExit(f"{root}: expected one folder of .wav files (the 16 kHz one) under it, found "
                         f"{[str(a) for a in audio[:5]]}")
    return root.resolve(), tables[0].name, audio[0].relative_to(root).as_posix()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("snapshot", type=Path)
    ap.add_argument("--out", type=Path, default=Path("esc50.yaml"))
    ap.add_argument("--val-fold", type=int, default=4)
    ap.add_argument("--test-fold", type=int, default=5)
    args = ap.parse_args(argv)
    root, meta_file, audio_dir = find_layout(args.snapshot)
    spec = {"data": {"dataset": "esc50", "root": str(root), "clip_seconds": 5.0,
                     "loader_options": {"meta_file": meta_file, "audio_dir": audio_dir,
                                        "val_fold": args.val_fold, "test_fold": args.test_fold}}}
    atomic_write_text(args.out, "# ESC-50 (CC BY-NC 3.0: do not commit its audio), written by bench/esc50_spec.py\n"
                      + yaml.safe_dump(spec, sort_keys=False))
    print(f"wrote {args.out}: root {root}, table {meta_file}, audio {audio_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
