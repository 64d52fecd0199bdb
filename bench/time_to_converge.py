"""Benchmark: time to a converged model, training recipe against recipe (and backbone against
backbone), and workers against threads.

Part 1 trains clean-label BCE runs of every ``--models`` backbone for every seed under every
``--setting`` recipe, side by side in one invocation, as the figures train them: ``--workers``
worker processes of ``--threads-per-worker`` torch threads. A recipe (``--setting``, repeated) is a name from
:data:`RECIPES` (``plateau``: the quick profile's recipe before the budget schedule -- a
plateau-triggered decay x0.1 twice, then early stopping, at most 100 epochs; ``profile``: the
profile's own) or ``NAME:key=value,key=value`` with ``TrainConfig`` fields (e.g.
``b64:batch_size=64,lr=0.006``). Per recipe and backbone it prints the epochs run and the best
epoch, the median and mean seconds of a run's training (its epochs, validation and progress
files; ``train_seconds`` of the record), the wall time of all its seeds, how many runs converged
(the rule of ``csu_lib.training.convergence``: over the last 10% of the epochs the training loss
changed by < 2% and validation mAP by < 0.01) and test mAP (mean and Student-t 95% CI over
seeds), and the ratio of the first recipe's median run time to each recipe's.

Part 2 (``--compare-workers``) trains the same ``--compare-runs`` runs (seeds 100, 101, ...) of the
last backbone twice: one after another in one process with ``--workers * --threads-per-worker``
threads, and in ``--workers`` workers of ``--threads-per-worker`` threads (their start-up
included); it prints both wall times and their ratio. Never asserts.

    PYTHONPATH=. python bench/time_to_converge.py [--profile quick] [--models pooled_cnn]
        [--setting plateau --setting profile --setting NAME:key=value,...] [--seeds 0,1,2] [--workers 2] [--threads-per-worker 1]
        [--compare-workers] [--compare-runs 4] [--runs-dir DIR]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
import torch
from common import parse_models, print_header, print_table

from csu_lib.config import ModelConfig
from csu_lib.core.stats import mean_ci
from csu_lib.models import build_model, count_parameters, multiply_adds
from csu_lib.records import find_runs, is_complete
from csu_lib.study import run_all, run_config

#: Named recipes (``TrainConfig`` overrides). ``plateau`` is the quick profile's recipe before the
#: budget schedule; ``profile`` the chosen profile's own.
RECIPES: dict[str, dict[str, Any]] = {
    "plateau": {"epochs": 100, "lr": 3e-3, "batch_size": 32, "lr_schedule": "constant", "early_stopping_patience": 5,
                "lr_decays": 2},
    "profile": {},
}


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` of :data:`RECIPES`, or ``NAME:key=value,...`` (values parsed as int, float, None or text)."""
    if ":" not in text:
        if text not in RECIPES:
            raise SystemExit(f"--setting: unknown recipe {text!r}; known: {', '.join(RECIPES)} or NAME:key=value,...")
        return text, dict(RECIPES[text])
    name, _, body = text.partition(":")
    out: dict[str, Any] = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = None if value == "None" else value
    return name, out


def configs_for(args, model: str, seeds: list[int], train: dict[str, Any]) -> list:
    return [run_config(args.profile, loss="bce", model=model, seed=s, device="cpu", train=train or None)
            for s in seeds]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    ap.add_argument("--models", default="pooled_cnn")
    ap.add_argument("--setting", action="append", default=None,
                    help="a recipe (repeat the option for several; default: plateau, then profile)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--compare-workers", action="store_true", help="also part 2: workers vs one process")
    ap.add_argument("--compare-runs", type=int, default=4, help="runs of part 2")
    ap.add_argument("--runs-dir", default=None, help="default: a new temporary folder")
    ap.add_argument("--threads", type=int, default=None, help="ignored (the workers set their own)")
    args = ap.parse_args()
    models = parse_models(args.models)
    settings = [parse_setting(s) for s in (args.setting or ["plateau", "profile"])]
    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="csu-bench-converge-")
    first = configs_for(args, models[0], seeds[:1], settings[0][1])[0]
    print_header("time to a converged model", {
        "profile": args.profile, "models": ",".join(models), "seeds": args.seeds,
        "settings": " ; ".join(f"{n} {v or '(profile)'}" for n, v in settings),
        "workers": args.workers, "threads_per_worker": args.threads_per_worker, "runs_dir": runs_dir})
    n_mels = first.frontend.n_mels
    n_frames = int(round(first.data.benchmark.clip_seconds * first.frontend.sample_rate / first.frontend.hop_length)) + 1
    rows: list[dict[str, Any]] = []
    for model in models:
        reference = None
        for name, train in settings:
            configs = configs_for(args, model, seeds, train)
            tc = configs[0].train
            where = f"{runs_dir}/{model}-{name}"
            reused = sum(1 for path in find_runs(where) if is_complete(path))
            t0 = time.perf_counter()
            records = run_all(configs, where, workers=args.workers, threads=args.threads_per_worker, progress=False)
            wall = time.perf_counter() - t0  # of the runs trained now (complete ones are reused)
            if reused:
                print(f"{model} {name}: {reused} complete run(s) in {where} reused: the wall time counts only the "
                      f"runs trained now", flush=True)
            maps = np.array([r.final_metrics["test"]["mAP"] for r in records])
            mean, lo, hi = mean_ci(maps)
            epochs = np.array([r.final_metrics["epochs_run"] for r in records])
            seconds = np.array([r.summary["train_seconds"] for r in records])
            converged = sum(bool(r.final_metrics.get("converged")) for r in records)
            reference = reference or float(np.median(seconds))
            net = build_model(ModelConfig(name=model, width=configs[0].model.width), len(records[0].class_names),
                              n_mels)
            rows.append({"setting": name, "model": model, "MACs/clip": multiply_adds(net, n_mels, n_frames) / 1e6,
                         "params": count_parameters(net), "batch": tc.batch_size, "lr": tc.lr,
                         "schedule": tc.lr_schedule, "epochs": float(epochs.mean()),
                         "best epoch": float(np.mean([r.final_metrics["best_epoch"] + 1 for r in records])),
                         "median s per run": float(np.median(seconds)), "mean s per run": float(seconds.mean()),
                         "speed-up": reference / float(np.median(seconds)), "wall (all seeds)": wall,
                         "converged": f"{converged}/{len(records)}", "test mAP": float(mean), "CI lo": float(lo),
                         "CI hi": float(hi), "n": len(records)})
            print(f"{model} {name}: test mAP {mean:.4f} [{lo:.4f}, {hi:.4f}] over {len(records)} seeds, "
                  f"{epochs.mean():.1f} epochs, median {np.median(seconds):.1f} s per run, wall {wall:.0f} s, "
                  f"converged {converged}/{len(records)}", flush=True)
    print()
    print_table(rows, ["setting", "model", "MACs/clip", "params", "batch", "lr", "schedule", "epochs", "best epoch",
                       "median s per run", "mean s per run", "speed-up", "wall (all seeds)", "converged", "test mAP",
                       "CI lo", "CI hi", "n"])
    if args.compare_workers:
        configs = configs_for(args, models[-1], [100 + i for i in range(args.compare_runs)], settings[-1][1])
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
