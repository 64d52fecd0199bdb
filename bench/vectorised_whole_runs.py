"""Benchmark: whole runs trained one after another vs as one vectorised group, same configurations.

Trains the CSU (or BCE) runs of ``--seeds`` x ``--conditions`` on the embedded benchmark twice,
into two runs folders: sequentially (``study.run_all(..., vectorise=1)``) and as vectorised
groups (``vectorise=len(configs)``), then prints per condition the mean and SD of test mAP over
the seeds for both, the Welch t statistic of the difference, the largest paired difference, and
the wall time of each side. Grouped runs draw their dropout masks differently, so they should
match sequential runs in distribution, not run by run; with few seeds this check has little
power against small shifts. Never asserts.

    PYTHONPATH=. python bench/vectorised_whole_runs.py [--profile quick] [--seeds 0,1,2,3]
                                                       [--conditions none,san:0.5] [--runs-dir DIR]

Reruns reuse complete runs in ``--runs-dir`` (default: a fresh temporary folder).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
from common import add_common_args, apply_common_args, print_header, print_table

from csu_lib.core.errors import CsuError
from csu_lib.config import parse_condition
from csu_lib.study import run_all, run_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    ap.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds")
    ap.add_argument("--conditions", default="none,san:0.5", help="comma-separated conditions (none or KIND:RATIO)")
    ap.add_argument("--loss", default="csu", choices=("bce", "csu"))
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs-dir", default=None, help="default: a new temporary folder")
    add_common_args(ap)
    args = ap.parse_args()
    apply_common_args(args)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        conditions = [parse_condition(c) for c in args.conditions.split(",")]
        configs = [run_config(args.profile, loss=args.loss, model=args.model, seed=s, epochs=args.epochs,
                              device=args.device, corruption=c) for c in conditions for s in seeds]
    except (ValueError, CsuError) as exc:
        raise SystemExit(f"bad --seeds/--conditions/--epochs: {exc}") from None
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="csu-bench-whole-runs-")
    print_header("whole runs: sequential vs one vectorised group", {
        "profile": args.profile, "loss": args.loss, "model": configs[0].model.name,
        "width": configs[0].model.width, "epochs": configs[0].train.epochs, "seeds": args.seeds,
        "conditions": args.conditions, "runs": len(configs), "device": args.device, "runs_dir": runs_dir})
    maps, seconds = {}, {}
    for side, size in (("sequential", 1), ("vectorised", len(configs))):
        t0 = time.perf_counter()
        records = run_all(configs, f"{runs_dir}/{side}", vectorise=size, progress=False)
        seconds[side] = time.perf_counter() - t0
        maps[side] = np.array([r.final_metrics["test"]["mAP"] for r in records]).reshape(len(conditions), len(seeds))
        print(f"{side}: {len(records)} runs in {seconds[side]:.0f} s", flush=True)
    rows = []
    for i in range(len(conditions)):
        a, b = maps["sequential"][i], maps["vectorised"][i]
        sd_a, sd_b = (float(x.std(ddof=1)) if len(seeds) > 1 else float("nan") for x in (a, b))
        se = np.sqrt((sd_a ** 2 + sd_b ** 2) / len(seeds))
        rows.append({"condition": configs[i * len(seeds)].corruption.label,
                     "sequential mAP": float(a.mean()), "sequential SD": sd_a, "vectorised mAP": float(b.mean()),
                     "vectorised SD": sd_b, "Welch t": float((b.mean() - a.mean()) / se) if se > 0 else float("nan"),
                     "max paired diff": float(np.abs(b - a).max())})
    print(f"time ratio vectorised/sequential: {seconds['vectorised'] / seconds['sequential']:.2f}x "
          "(> 1: the group took longer)")
    print()
    print_table(rows, ["condition", "sequential mAP", "sequential SD", "vectorised mAP", "vectorised SD", "Welch t",
                       "max paired diff"])


if __name__ == "__main__":
    main()
