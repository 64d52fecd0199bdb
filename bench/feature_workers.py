"""Benchmark: building a feature store with worker processes vs in the builder alone, and a
build interrupted and resumed.

Writes a folder of ``--clips`` generated WAV files (``--seconds`` long at ``--rate`` Hz, so the
build decodes, resamples and computes log-mels, as on a real dataset) and builds its store once
per ``--workers`` value (each into a fresh cache, side by side in this run), then prints clips/s
and the ratio of each to the first. It then interrupts a build after about half its blocks
(a child process killed with SIGKILL), resumes it, and checks the resumed store equals the
uninterrupted one bit for bit. Timings on a shared machine are noisy: read the ratio. Never
asserts on time.

    PYTHONPATH=. python bench/feature_workers.py [--clips 2000] [--seconds 2] [--rate 32000]
        [--workers 1,2] [--frontend panns16k] [--batch-size 64] [--folder DIR]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import pandas as pd
from common import add_common_args, apply_common_args, print_header, print_table

from csu_lib.config import frontend_preset
from csu_lib.data import Manifest, write_wav
from csu_lib.features import build_features


def make_folder(folder: Path, clips: int, seconds: float, rate: int) -> Manifest:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(clips):
        path = folder / f"clip{i:05d}.wav"
        if not path.is_file():
            wave = 0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * (200 + 5 * (i % 50)) * t)
            write_wav(path, wave.astype(np.float32), rate)
    clips_df = pd.DataFrame({"clip_id": [f"clip{i:05d}" for i in range(clips)],
                             "path": [f"clip{i:05d}.wav" for i in range(clips)], "split": "train"})
    return Manifest(clips=clips_df, labels=np.zeros((clips, 1)), class_names=["k"], root=folder, name="bench")


def _build_and_die(manifest, frontend, seconds, cache, kill_after, batch_size):
    """A child that builds the store and SIGKILLs itself after ``kill_after`` clips were written."""
    import csu_lib.features.store as store

    write = store.StoreWriter.write

    def dying(self, block):
        write(self, block)
        if self.written >= kill_after:
            self.checkpoint()
            os.kill(os.getpid(), signal.SIGKILL)

    store.StoreWriter.write = dying
    build_features(manifest, frontend, seconds, cache_dir=cache, progress=False, workers=1, batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rate", type=int, default=32000, help="sample rate of the files (resampled to the front-end's)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts, the first is the reference")
    ap.add_argument("--frontend", default="panns16k")
    ap.add_argument("--batch-size", type=int, default=64, help="clips per block (the unit of work)")
    ap.add_argument("--folder", default=None, help="where the WAV files go (default: a temporary folder)")
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    workers = [int(w) for w in args.workers.split(",")]
    frontend = frontend_preset(args.frontend)
    print_header("feature store build: worker processes and resume",
                 {"clips": args.clips, "seconds": args.seconds, "file_rate": args.rate, "frontend": args.frontend,
                  "workers": workers})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "wav"
        manifest = make_folder(folder, args.clips, args.seconds, args.rate)
        rows, stores = [], {}
        for w in workers:
            t0 = time.perf_counter()
            stores[w] = build_features(manifest, frontend, args.seconds, cache_dir=Path(tmp) / f"cache{w}",
                                       progress=False, workers=w, batch_size=args.batch_size)
            seconds = time.perf_counter() - t0
            rows.append({"workers": w, "seconds": round(seconds, 2), "clips/s": round(args.clips / seconds, 1)})
        for row in rows:
            row["ratio"] = round(rows[0]["seconds"] / row["seconds"], 2)
        print_table(rows, ["workers", "seconds", "clips/s", "ratio"])
        ref = np.asarray(stores[workers[0]].features)
        same = all(np.array_equal(ref, np.asarray(s.features)) for s in stores.values())
        for row in rows[1:]:
            print(f"{row['workers']} workers vs {workers[0]}: ratio {row['ratio']:.2f}x "
                  f"({row['clips/s']} vs {rows[0]['clips/s']} clips/s); features identical: {same}")
        # an interrupted build resumes where it stopped
        cache = Path(tmp) / "cache-killed"
        child = multiprocessing.get_context("spawn").Process(
            target=_build_and_die, args=(manifest, frontend, args.seconds, cache, args.clips // 2, args.batch_size))
        child.start()
        child.join()
        t0 = time.perf_counter()
        resumed = build_features(manifest, frontend, args.seconds, cache_dir=cache, progress=False, workers=1,
                                 batch_size=args.batch_size)
        rest = time.perf_counter() - t0
        equal = np.array_equal(np.asarray(resumed.features), ref)
        print(f"interrupted build (killed after {args.clips // 2} of {args.clips} clips, exit {child.exitcode}) "
              f"resumed in {rest:.1f} s; store identical to an uninterrupted build: {equal}")


if __name__ == "__main__":
    main()
