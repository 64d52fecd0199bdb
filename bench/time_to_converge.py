"""Benchmark: time to a converged model, backbone against backbone, and workers against threads.

Part 1 trains clean-label BCE runs of every ``--models`` backbone for every seed to a validation
plateau (early stopping with ``--patience``, at most ``--epochs``), as the quick profile trains
them: ``--workers`` worker processes of ``--threads-per-worker`` torch threads. Per backbone it
prints the multiply-adds of one clip, the parameters, the throughput (training clips per second
of one run's training time, validation included), the epochs run and the best epoch, the seconds per run, whether
every run reached a plateau, and test mAP (mean and Student-t 95% CI over seeds).

Part 2 (``--compare-workers``) trains the same ``--compare-runs`` runs (seeds 100, 101, ...) of the
last backbone twice, side by side in one invocation: one after another in one process with
``--workers * --threads-per-worker`` threads, and in ``--workers`` workers of
``--threads-per-worker`` threads (their start-up included); it prints both wall times and their
ratio (runs per minute of the workers over one process). Never asserts.

    PYTHONPATH=. python bench/time_to_converge.py [--profile quick] [--models small_cnn,pooled_cnn]
        [--seeds 0,1,2] [--epochs 60] [--patience 5] [--workers 2] [--threads-per-worker 1]
        [--compare-workers] [--compare-runs 4] [--runs-dir DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import torch
from common import parse_models, print_header, print_table

from csu_lib.config import ModelConfig
from csu_lib.core.stats import mean_ci
from csu_lib.models import build_model, count_parameters, multiply_adds
from csu_lib.records import find_runs, is_complete
from csu_lib.study import run_all, run_config


def configs_for(args, model: str, seeds: list[int]) -> list:
    train = {"epochs": args.epochs, "early_stopping_patience": args.patience}
    if args.batch_size:
        train["batch_size"] = args.batch_size
    if args.lr:
        train["lr"] = args.lr
    return [run_config(args.profile, loss="bce", model=model, seed=s, device="cpu", train=train) for s in seeds]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    ap.add_argument("--models", default="small_cnn,pooled_cnn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=60, help="epoch cap")
    ap.add_argument("--patience", type=int, default=5, help="early-stopping patience (epochs)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the profile's")
    ap.add_argument("--lr", type=float, default=None, help="default: the profile's")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--compare-workers", action="store_true", help="also part 2: workers vs one process")
    ap.add_argument("--compare-runs", type=int, default=4, help="runs of part 2")
    ap.add_argument("--runs-dir", default=None, help="default: a new temporary folder")
    ap.add_argument("--threads", type=int, default=None, help="ignored (the workers set their own)")
    args = ap.parse_args()
    models = parse_models(args.models)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="csu-bench-converge-")
    first = configs_for(args, models[0], seeds[:1])[0]
    print_header("time to a converged model", {
        "profile": args.profile, "models": ",".join(models), "seeds": args.seeds, "epoch_cap": args.epochs,
        "patience": args.patience, "batch_size": first.train.batch_size, "lr": first.train.lr,
        "workers": args.workers, "threads_per_worker": args.threads_per_worker, "runs_dir": runs_dir})
    n_mels = first.frontend.n_mels
    n_frames = int(round(first.data.benchmark.clip_seconds * first.frontend.sample_rate / first.frontend.hop_length)) + 1
    rows = []
    for model in models:
        configs = configs_for(args, model, seeds)
        reused = sum(1 for path in find_runs(f"{runs_dir}/{model}") if is_complete(path))
        t0 = time.perf_counter()
        records = run_all(configs, f"{runs_dir}/{model}", workers=args.workers, threads=args.threads_per_worker,
                          progress=False)
        wall = time.perf_counter() - t0  # of the runs trained now (complete ones are reused)
        if reused:
            print(f"{model}: {reused} complete run(s) in {runs_dir}/{model} reused: the wall time counts only "
                  f"the runs trained now", flush=True)
        maps = np.array([r.final_metrics["test"]["mAP"] for r in records])
        mean, lo, hi = mean_ci(maps)
        epochs = np.array([r.final_metrics["epochs_run"] for r in records])
        seconds = np.array([r.summary["train_seconds"] for r in records])
        n_train = records[0].summary["n_train"]
        net = build_model(ModelConfig(name=model, width=configs[0].model.width), len(records[0].class_names), n_mels)
        rows.append({"model": model, "MACs/clip": multiply_adds(net, n_mels, n_frames) / 1e6,
                     "params": count_parameters(net), "clips/s per run": float(np.mean(n_train * epochs / seconds)),
                     "epochs": float(epochs.mean()),
                     "best epoch": float(np.mean([r.final_metrics["best_epoch"] + 1 for r in records])),
                     "s per run": float(seconds.mean()), "all plateau": all(r.final_metrics["plateau"] for r in records),
                     "wall (all seeds)": wall, "test mAP": float(mean), "CI lo": float(lo), "CI hi": float(hi),
                     "n": len(records)})
        print(f"{model}: test mAP {mean:.4f} [{lo:.4f}, {hi:.4f}] over {len(records)} seeds, "
              f"{epochs.mean():.1f} epochs, {seconds.mean():.1f} s per run, wall {wall:.0f} s", flush=True)
    print()
    print_table(rows, ["model", "MACs/clip", "params", "clips/s per run", "epochs", "best epoch", "s per run",
                       "all plateau", "wall (all seeds)", "test mAP", "CI lo", "CI hi", "n"])
    if args.compare_workers:
        configs = configs_for(args, models[-1], [100 + i for i in range(args.compare_runs)])
        threads = args.workers * args.threads_per_worker
        before = torch.get_num_threads()
        t0 = time.perf_counter()
        run_all(configs, f"{runs_dir}/compare-one-process", workers=1, threads=threads, progress=False)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_all(configs, f"{runs_dir}/compare-workers", workers=args.workers, threads=args.threads_per_worker,
                progress=False)
        many = time.perf_counter() - t0
        torch.set_num_threads(before)
        print(f"\n{len(configs)} runs of {models[-1]}: one process x {threads} threads {one:.0f} s, "
              f"{args.workers} workers x {args.threads_per_worker} thread(s) {many:.0f} s, "
              f"ratio one-process/workers: {one / many:.2f}x")


if __name__ == "__main__":
    main()
