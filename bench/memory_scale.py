"""Benchmark: peak resident memory (RSS) of one training epoch against the number of clips.

For every size it writes a synthetic feature store (random float16 log-mels, no audio) through
:class:`csu_lib.features.StoreWriter`, then runs the real :func:`csu_lib.training.train_run` for one
epoch (tiny SmallCNN, a synthetic in-memory manifest, the store streamed with
``train.features_in_memory="never"``) in a fresh Python process, and reads that process's peak
RSS (``VmHWM`` of ``/proc/self/status``; ``ru_maxrss`` where there is no /proc). The epoch
touches every clip: training over the train split, validation, and the final scoring of all
three splits. Prints one row per size, the ratio of each peak to the first, and the machine and
settings. Never asserts (the test ``tests/features/test_store.py`` does, on 10k vs 100k).

    PYTHONPATH=. python bench/memory_scale.py [--sizes 10000 100000 200000] [--mode never]

Peak RSS of the real loop also rises with the number of optimiser steps through glibc's dynamic
mmap threshold (freed large blocks make malloc keep later ones on a fragmenting heap), independent
of the store; ``MALLOC_MMAP_THRESHOLD_=131072`` in the environment fixes the threshold and removes
that drift (measured numbers: /tmp/helpers/memory-readme.md, proposed for the README).

``--mode auto`` shows the other path: small stores are copied into memory, so the peak then grows
with the store (up to the 2 GiB in-memory limit).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_CLASSES = 4


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def build_store(path: Path, n_clips: int, n_mels: int, n_frames: int, *, seed: int = 0,
                block: int = 4096, shard_clips: int | None = None) -> None:
    """A synthetic store of ``n_clips`` clips at ``path`` (written block by block)."""
    from csu_lib.config import FrontendConfig
    from csu_lib.features import StoreWriter

    rng = np.random.default_rng(seed)
    with StoreWriter(path, n_mels=n_mels, n_frames=n_frames, frontend=FrontendConfig(n_mels=n_mels),
                     clip_ids=[f"c{i}" for i in range(n_clips)], shard_clips=shard_clips) as writer:
        for start in range(0, n_clips, block):
            k = min(block, n_clips - start)
            writer.write((rng.standard_normal((k, n_mels, n_frames), dtype=np.float32) * 20 - 40))


def synthetic_data(store_path: Path, seed: int = 0):
    """PreparedData over a built store: 80/10/10 train/val/test, random multi-hot labels."""
    import pandas as pd

    from csu_lib.features import open_store
    from csu_lib.data.manifest import Manifest
    from csu_lib.pipeline import PreparedData

    store = open_store(store_path)
    n = len(store)
    rng = np.random.default_rng(seed)
    split = np.where(np.arange(n) % 10 == 8, "val", np.where(np.arange(n) % 10 == 9, "test", "train"))
    labels = (rng.random((n, N_CLASSES)) < 0.3).astype(np.float32)
    labels[np.arange(n), rng.integers(0, N_CLASSES, n)] = 1.0
    clips = pd.DataFrame({"clip_id": store.clip_ids, "path": "none.wav", "split": split})
    manifest = Manifest(clips=clips, labels=labels, class_names=[f"k{i}" for i in range(N_CLASSES)],
                        root=store_path, name="synthetic")
    idx = {s: manifest.split_indices(s) for s in ("train", "val", "test")}
    return PreparedData(manifest, store, idx["train"], idx["val"], idx["test"], labels[idx["train"]].copy(), None)


def run_epoch(store_path: Path, run_dir: Path, *, mode: str, width: float, batch_size: int,
              threads: int) -> dict:
    """One epoch of train_run over the store (in this process); returns peak RSS and timing."""
    import torch

    from csu_lib.config import FrontendConfig
    from csu_lib.study import run_config
    from csu_lib.training import train_run

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = synthetic_data(store_path)
    n_mels = data.store.features.shape[1]
    config = run_config("smoke", loss="bce", epochs=1, device="cpu", width=width,
                        train={"batch_size": batch_size, "eval_batch_size": 1024,
                               "features_in_memory": mode, "early_stopping_patience": None})
    config = config.replace(frontend=FrontendConfig(n_mels=n_mels))
    rss_before = peak_rss_bytes()
    record = train_run(config, run_dir, data=data, progress=False)
    return {"n_clips": len(data.store), "peak_rss": peak_rss_bytes(), "peak_rss_before_training": rss_before,
            "seconds": time.perf_counter() - t0, "mode": mode, "n_shards": data.store.features.n_shards,
            "store_bytes": data.store.nbytes, "epochs_run": int(record.final_metrics["epochs_run"])}


def run_reader_epoch(store_path: Path, *, mode: str, batch_size: int, threads: int, mmap: bool = False,
                     seed: int = 0) -> dict:
    """The cheap stand-in for an epoch: every clip read once in shuffled batches through
    :class:`~csu_lib.features.FeatureLoader` (the reader train_run uses), a tiny model (linear
    layer on the mel profile) trained on each batch, then one in-order scoring pass.
    ``mmap=True`` reads the same shards through ``np.memmap`` instead (to show why the store is
    not read that way)."""
    import torch

    from csu_lib.features import FeatureLoader, open_store

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    store = open_store(store_path)
    feats = store.features
    if mmap:
        maps = [np.load(p, mmap_mode="r") for p in feats.paths]

        def load(rows: np.ndarray) -> torch.Tensor:
            shard = np.searchsorted(feats.starts, rows, side="right") - 1
            return torch.from_numpy(np.stack([maps[s][r - feats.starts[s]] for s, r in zip(shard, rows)])
                                    .astype(np.float32))
        reason = "np.memmap"
    else:
        load = FeatureLoader(store, "cpu", mode)
        reason = load.reason
    n = len(store)
    model = torch.nn.Linear(feats.shape[1], N_CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    y_all = torch.from_numpy((rng.random((n, N_CLASSES)) < 0.3).astype(np.float32))
    order = rng.permutation(n)
    total = 0.0
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(load(rows).mean(-1)), y_all[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            model(load(np.arange(start, min(start + batch_size, n))).mean(-1))
    return {"n_clips": n, "peak_rss": peak_rss_bytes(), "seconds": time.perf_counter() - t0, "mode": reason,
            "n_shards": feats.n_shards, "store_bytes": store.nbytes, "mean_loss": total}


def measure(sizes: list[int], *, work: Path, n_mels: int = 64, n_frames: int = 32, mode: str = "never",
            width: float = 0.05, batch_size: int = 512, threads: int = 1, loop: str = "train_run") -> list[dict]:
    """Build a store of each size and run one epoch over it (``loop``: "train_run", "reader" or
    "reader-mmap") in a fresh process each."""
    rows = []
    for n in sizes:
        store = work / f"store-{n}-{n_mels}x{n_frames}"
        if not (store / "meta.json").is_file():
            build_store(store, n, n_mels, n_frames)
        run_dir = work / f"run-{n}-{mode}"
        shutil.rmtree(run_dir, ignore_errors=True)  # a complete run would be skipped, not trained
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(store), "--run-dir",
               str(run_dir), "--mode", mode, "--width", str(width),
               "--batch-size", str(batch_size), "--threads", str(threads), "--loop", loop]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 200_000])
    ap.add_argument("--mels", type=int, default=64)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--mode", default="never", choices=("auto", "always", "never"),
                    help="train.features_in_memory")
    ap.add_argument("--width", type=float, default=0.05, help="SmallCNN width")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loop", default="train_run", choices=("train_run", "reader", "reader-mmap"),
                    help="train_run: the real training loop; reader: FeatureLoader + a linear model "
                         "(what the test runs); reader-mmap: the same over np.memmap, for comparison")
    ap.add_argument("--work", default=None, help="folder for the stores and runs (default: a temp folder)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        if args.loop == "train_run":
            row = run_epoch(Path(args.child), Path(args.run_dir), mode=args.mode, width=args.width,
                            batch_size=args.batch_size, threads=args.threads)
        else:
            row = run_reader_epoch(Path(args.child), mode=args.mode, batch_size=args.batch_size,
                                   threads=args.threads, mmap=args.loop == "reader-mmap")
        print(json.dumps(row))
        return

    import torch

    with tempfile.TemporaryDirectory(prefix="csu-memscale-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = measure(args.sizes, work=work, n_mels=args.mels, n_frames=args.frames, mode=args.mode,
                       width=args.width, batch_size=args.batch_size, threads=args.threads, loop=args.loop)
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}; python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}")
    print(f"settings: clips of {args.mels} mels x {args.frames} frames (float16), SmallCNN width {args.width}, "
          f"batch {args.batch_size}, {args.threads} thread(s), train.features_in_memory={args.mode!r}, "
          + ("1 epoch of train_run (train + val + final scoring of every split)" if args.loop == "train_run"
             else f"loop {args.loop!r} (shuffled training pass + in-order scoring pass)")
          + ", one fresh process per size")
    base = rows[0]["peak_rss"]
    print(f"{'clips':>9} {'store MiB':>10} {'shards':>7} {'peak RSS MiB':>13} {'vs first':>9} {'seconds':>8}")
    for r in rows:
        print(f"{r['n_clips']:>9} {r['store_bytes'] / 1024**2:>10.0f} {r['n_shards']:>7} "
              f"{r['peak_rss'] / 1024**2:>13.1f} {r['peak_rss'] / base:>9.3f} {r['seconds']:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
