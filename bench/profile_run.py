"""Benchmark: where the time of one training run goes, and the FLOP/s it achieves.

Trains one run with the library's own code (``train_run``: the engine, the single-process
backend, the run record) and times its parts by wrapping them: data preparation (the benchmark and
its cached features, prepared before the run as ``run_all`` does once per worker), model and
optimiser set-up, batch assembly (feature gather, targets, the method's batch transform), forward
with the loss, backward, the optimiser step, the rest of a step (zero_grad, the clamp of a learned
s, the loss accumulation), validation, the progress and checkpoint files written after every
epoch, the end of the run (scores of every split, final metrics, ``model.pt``, the record), and
whatever is left (the epoch loop's own bookkeeping, the progress bar). The imports of a worker
process are timed in a fresh interpreter.

Achieved FLOP/s: 2 x 3 x (multiply-adds of one clip's forward, counted by PyTorch's FLOP counter)
per training clip (forward + backward ~ 3 forwards), over the forward and backward seconds; the
attainable peak is a large float32 matrix product on the same threads, measured here.

    PYTHONPATH=. python bench/profile_run.py [--profile quick] [--model pooled_cnn] [--loss bce]
        [--seed 0] [--threads 1] [--epochs N] [--batch-size B] [--lr LR] [--schedule S]
        [--patience P] [--lr-decays D] [--runs-dir DIR]

Never asserts; prints a Markdown table.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import torch
from common import print_header, print_table

from csu_lib.models import multiply_adds
from csu_lib.pipeline import prepare_data
from csu_lib.study import run_config
from csu_lib.training import engine, single, train_run
from csu_lib.training import run as run_module
from csu_lib.training.seeding import init_model

PARTS = ("data preparation", "model + optimiser set-up", "batch assembly", "forward + loss", "backward",
         "optimiser step", "rest of the step", "validation", "progress + checkpoint files", "end of run",
         "epoch loop, other")


class Clock:
    """Seconds per part, accumulated by wrapping the functions that do each part."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.seconds[part] += time.perf_counter() - t0
                clock.calls[part] += 1

        setattr(owner, name, timed)


def import_seconds() -> float:
    """Wall time of a fresh interpreter importing the training stack (what a worker pays once)."""
    code = "import time; t = time.perf_counter(); import csu_lib.training, csu_lib.study; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PATH": ""})
    return float(out.stdout.strip().splitlines()[-1])


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    """Float32 GFLOP/s of an n x n matrix product on the current torch threads (best of 3)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - t0) / repeats)
    return 2 * n**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    ap.add_argument("--model", default=None, help="default: the profile's first backbone")
    ap.add_argument("--loss", default="bce")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a quick worker has 1)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--schedule", default=None, help="train.lr_schedule (default: the profile's)")
    ap.add_argument("--patience", type=int, default=-1, help="early-stopping patience; 0: off (default: the profile's)")
    ap.add_argument("--lr-decays", type=int, default=None)
    ap.add_argument("--runs-dir", default=None, help="default: a new temporary folder")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = {k: v for k, v in {"batch_size": args.batch_size, "lr": args.lr, "lr_schedule": args.schedule,
                               "lr_decays": args.lr_decays}.items() if v is not None}
    if args.patience >= 0:
        train["early_stopping_patience"] = args.patience or None
        if not args.patience:
            train["lr_decays"] = 0
    config = run_config(args.profile, loss=args.loss, model=args.model, seed=args.seed, epochs=args.epochs,
                        device="cpu", train=train)
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="csu-bench-profile-"))
    print_header("where the time of one training run goes", {
        "profile": args.profile, "model": config.model.name, "loss": args.loss, "seed": args.seed,
        "batch_size": config.train.batch_size, "lr": config.train.lr, "lr_schedule": config.train.lr_schedule,
        "epoch_cap": config.train.epochs, "patience": config.train.early_stopping_patience,
        "lr_decays": config.train.lr_decays, "runs_dir": runs_dir})

    clock = Clock()
    t0 = time.perf_counter()
    data = prepare_data(config, progress=False)
    clock.seconds["data preparation"] = time.perf_counter() - t0
    clock.wrap(single.SingleProcess, "__init__", "model + optimiser set-up")
    clock.wrap(single.SingleProcess, "_batch", "batch assembly")
    clock.wrap(single.SingleProcess, "_loss", "forward + loss")
    clock.wrap(single.SingleProcess, "step", "whole step")
    clock.wrap(torch.Tensor, "backward", "backward")
    clock.wrap(torch.optim.Optimizer, "zero_grad", "zero_grad")
    clock.wrap(single.SingleProcess, "validate", "validation")
    clock.wrap(engine, "write_progress", "progress + checkpoint files")
    clock.wrap(engine, "save_checkpoint", "progress + checkpoint files")
    clock.wrap(run_module, "finish_run", "end of run")
    clock.wrap(run_module, "train_epochs", "epoch loop")
    # the optimiser class is chosen at run time: wrap the step of both
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        clock.wrap(cls, "step", "optimiser step")

    t0 = time.perf_counter()
    record = train_run(config, runs_dir / config.run_id, data=data, progress=False)
    run_wall = time.perf_counter() - t0
    s = clock.seconds
    s["rest of the step"] = s["whole step"] - s["batch assembly"] - s["forward + loss"] - s["backward"] \
        - s["optimiser step"]
    s["epoch loop, other"] = s["epoch loop"] - s["whole step"] - s["validation"] - s["progress + checkpoint files"]
    total = s["data preparation"] + run_wall
    s["other (train_run set-up)"] = run_wall - s["epoch loop"] - s["end of run"] - s["model + optimiser set-up"]

    epochs = len(record.history)
    n_train = len(data.train_idx)
    _, n_mels, n_frames = data.store.features.shape
    macs = multiply_adds(init_model(config, data.manifest.n_classes), n_mels, n_frames)
    clips = n_train * epochs
    compute = s["forward + loss"] + s["backward"]
    achieved = 6 * macs * clips / compute / 1e9 if compute else float("nan")
    peak = matmul_gflops()

    rows = [{"part": p, "seconds": s[p], "share": s[p] / total} for p in PARTS]
    rows.append({"part": "other (train_run set-up)", "seconds": s["other (train_run set-up)"],
                 "share": s["other (train_run set-up)"] / total})
    rows.append({"part": "total", "seconds": total, "share": 1.0})
    print_table([{**r, "share": f"{100 * r['share']:.1f}%"} for r in rows], ["part", "seconds", "share"])
    steps = clock.calls["whole step"]
    print(f"\nepochs {epochs} (best {record.final_metrics['best_epoch'] + 1}), steps {steps}, "
          f"{1e3 * s['whole step'] / max(steps, 1):.1f} ms per step, "
          f"{s['validation'] / max(epochs, 1):.3f} s per validation, test mAP {record.final_metrics['test']['mAP']:.4f}")
    print(f"multiply-adds per clip {macs / 1e6:.2f} M (input {n_mels} x {n_frames}); achieved "
          f"{achieved:.2f} GFLOP/s in forward + backward vs {peak:.1f} GFLOP/s of a 1024^2 float32 matrix product "
          f"on {torch.get_num_threads()} thread(s) ({100 * achieved / peak:.1f}%)")
    print(f"imports of a worker (fresh interpreter, once per worker): {import_seconds():.2f} s")


if __name__ == "__main__":
    main()
