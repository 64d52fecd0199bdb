"""Benchmark: how CSU's s is learned, and whether it is at its stationary point when read.

Trains CSU runs of the profile (every ``--conditions`` x ``--seeds``, to a validation plateau as
the profile trains them) under each ``--fits``: ``stationary`` (s set to its closed-form optimum
after every epoch: the variant ``csu_stationary``), ``gradient`` (the paper's form, what "CSU"
means by default: s learned by Adam at the model's learning rate) and ``gradient-xK`` (s learned by Adam at K times the model's learning rate). Per
fit and condition it prints the median over classes of |s - s*| for the selected model (s* from
the run's own training scores and labels, recomputed here from the record's files:
``analysis.sigma.stationarity_table``), the epochs run and the test mAP, mean and Student-t 95% CI
over seeds. Runs already in ``--runs-dir`` (e.g. ``runs/study`` after ``make figures``) are
reused. Never asserts.

    PYTHONPATH=. python bench/csu_fit.py [--profile quick] [--conditions none,san:0.5,man:0.5,sln:0.5]
        [--seeds 0,1,2] [--fits stationary,gradient,gradient-x10] [--workers 2] [--runs-dir DIR]
"""
from __future__ import annotations

import argparse
import tempfile

import common  # noqa: F401  (first: puts the repository on sys.path when run as a script)
import numpy as np
from common import print_header, print_table

from csu_lib.analysis.sigma import stationarity_table
from csu_lib.config import parse_condition
from csu_lib.core.stats import mean_ci
from csu_lib.study import get_profile, run_all, run_config


def fit_options(fit: str, lr: float) -> dict:
    if fit == "stationary":
        return {"csu_fit": "stationary"}
    if fit == "gradient":
        return {"csu_fit": "gradient"}
    if fit.startswith("gradient-x"):
        return {"csu_fit": "gradient", "csu_lr": lr * float(fit.split("-x")[1])}
    raise SystemExit(f"--fits: unknown fit {fit!r} (stationary, gradient, gradient-xK)")


def ci_text(values: list[float]) -> str:
    mean, lo, hi = mean_ci(np.asarray(values, float))
    return f"{float(mean):.3f} [{float(lo):.3f}, {float(hi):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=("smoke", "quick", "paper"))
    ap.add_argument("--conditions", default="none,san:0.5,man:0.5,sln:0.5")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--fits", default="stationary,gradient,gradient-x10")
    ap.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    ap.add_argument("--device", default="auto", help="auto (as make figures: its runs are reused) | cpu | cuda")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--runs-dir", default=None, help="default: a new temporary folder")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    conditions, fits = args.conditions.split(","), args.fits.split(",")
    lr = get_profile(args.profile).lr
    print_header("CSU: stationary fit vs gradient-learned s", vars(args))
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="csu_fit_")
    rows = []
    for fit in fits:
        configs = []
        for cond in conditions:
            parsed = parse_condition(cond)
            for seed in seeds:
                configs.append(run_config(args.profile, loss="csu", seed=seed, epochs=args.epochs, device=args.device,
                                          corruption=parsed if parsed["kind"] != "none" else None,
                                          loss_options=fit_options(fit, lr)))
        records = run_all(configs, runs_dir, workers=args.workers, threads=args.threads)
        gaps = stationarity_table(records)
        for cond in conditions:
            label = configs[conditions.index(cond) * len(seeds)].corruption.label
            recs = [r for r in records if r.config.corruption.label == label]
            gap = gaps[gaps["condition"] == label]
            # a clean record keeps no training labels: its recomputed gap is the stored one
            values = gap["recomputed"].where(gap["recomputed"].notna(), gap["stored"]).tolist()
            rows.append({"fit": fit, "condition": label, "runs": len(recs),
                         "median abs(s - s*)": ci_text(values),
                         "epochs run": ci_text([len(r.history) for r in recs]),
                         "test mAP": ci_text([r.final_metrics["test"]["mAP"] for r in recs])})
    print_table(rows, ["fit", "condition", "runs", "median abs(s - s*)", "epochs run", "test mAP"])


if __name__ == "__main__":
    main()
