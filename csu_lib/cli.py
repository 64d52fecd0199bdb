"""The ``csu`` command.

    csu train   [--profile P] [--loss bce|csu|csu_stationary] [--model M] [--seed N] [--epochs N]
                [--corruption KIND[:RATIO]] [--device D] [--config RUN.json] [--run-dir DIR]
    csu sweep   STUDY.yaml [--runs-dir DIR] [--engine local|ray] [--address ADDR]
                [--cpus-per-run N] [--gpus-per-run N] [--workers N] [--threads-per-worker T]
    csu report  STUDY.yaml|RUNS_DIR [--metric test.mAP] [--csv FILE]
    csu data check DATA.yaml [--all] [--csv FILE]
    csu figures [--profile smoke|quick|paper] [--data DATA.yaml] [--only NAME ...] [--runs-dir DIR]
                [--fig-dir DIR] [--workers N] [--threads-per-worker T] [--report-only]
    csu gallery [--fig-dir figures] [--out docs/gallery]

``csu figures`` executes the notebooks of ``notebooks/`` through papermill with the chosen
profile (and data spec: :mod:`csu_lib.config.data_spec`; default the embedded benchmark), keeps
each executed notebook under ``<runs-dir>/executed/<profile>/``, records what made each figure in
``<fig-dir>/manifest.json`` and writes the figure report ``<fig-dir>/index.html``
(:mod:`csu_lib.report`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from .core.errors import CsuError
from .core.paths import resolve_path

# Start-up: building the parser and parsing the arguments import nothing heavy (``csu --help`` and
# an argument error answer at once); each command imports the stack it needs (PyTorch, pandas,
# SciPy, papermill...) when it runs. The function-level csu_lib imports below are the one
# exception to the module-level rule of tests/test_architecture.py. Every registry still fills
# itself before a configuration is checked (csu_lib.core.registry).


def _train(args: argparse.Namespace) -> int:
    from .config import RunConfig, parse_condition
    from .core.io import read_json
    from .study import run_config, run_dir_for
    from .training import train_run

    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise CsuError(f"--config {path}: file not found")
        config = RunConfig.from_dict(read_json(path))
    else:
        config = run_config(args.profile, loss=args.loss, model=args.model, seed=args.seed, epochs=args.epochs,
                            device=args.device, width=args.width, corruption=parse_condition(args.corruption))
    run_dir = resolve_path(args.run_dir) if args.run_dir else run_dir_for(config, resolve_path(args.runs_dir))
    record = train_run(config, run_dir, data_dir=resolve_path(args.data_dir), cache_dir=resolve_path(args.cache_dir),
                       progress=not args.quiet)
    test = record.final_metrics["test"]
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    print(f"{run_dir}: test mAP {test['mAP']:.4f}  mAUC {test['mAUC']:.4f}  d' {test['d_prime']:.3f}  "
          f"lwlrap {test['lwlrap']:.4f}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    if args.report_only:
        from .report import write_report

        print(f"[csu figures] wrote {write_report(resolve_path(args.fig_dir))}")
        return 0
    from . import notebook_runner as notebooks
    from .config import parse_data_spec
    from .config.profiles import get_profile

    # every argument is checked before the training stack is imported
    get_profile(args.profile)
    spec = parse_data_spec(args.data, where="--data") if args.data else None
    names = list(args.only or notebooks.FIGURE_NOTEBOOKS)
    for name in names:
        notebooks.notebook_path(name)
    from .report import environment, record_notebook, write_report
    from .study.pool import THREADS_ENV, WORKERS_ENV, resolve_workers

    runs_dir = resolve_path(args.runs_dir)
    fig_dir = resolve_path(args.fig_dir)
    executed = runs_dir / "executed" / args.profile
    executed.mkdir(parents=True, exist_ok=True)
    workers, threads = resolve_workers(args.workers, args.threads_per_worker)  # checked before anything runs
    os.environ[WORKERS_ENV], os.environ[THREADS_ENV] = str(workers), str(threads)  # read by the notebooks' run_all
    print(f"[csu figures] training with {workers} worker(s) x {threads} torch thread(s)", flush=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    env = environment(args.profile, spec.to_dict() if spec is not None else None)
    # the next notebooks' kernels start (and import the suite) while the current one runs: two ahead,
    # so that a short notebook's successor has had two notebooks' time to warm up (re-rendering)
    warm: dict[int, "notebooks.WarmKernel"] = {}
    try:
        for i, name in enumerate(names):
            t0 = time.perf_counter()
            print(f"[csu figures] {name} ({args.profile} profile) ...", flush=True)
            # one shared runs folder: runs are keyed by config hash, so a run two figures need is trained once
            params = {"profile": args.profile, "fig_dir": str(fig_dir), "runs_dir": str(runs_dir / "study"),
                      **({"data": spec.to_dict()} if spec is not None else {})}
            params = {k: v for k, v in params.items() if k in notebooks.declared_parameters(name)}
            kernel = warm.pop(i, None)
            for ahead in range(i + 1, min(i + 1 + notebooks.WARM_AHEAD, len(names))):
                if ahead not in warm:
                    warm[ahead] = notebooks.WarmKernel()
            started = time.time()
            notebooks.execute(name, executed / f"{name}.ipynb", params, kernel=kernel,
                              progress_bar=not (args.quiet or args.log_output), log_output=args.log_output)
            record_notebook(fig_dir, name, params, started=started, executed=executed / f"{name}.ipynb",
                                   environment=env)
            print(f"[csu figures] {name} done in {time.perf_counter() - t0:.0f} s; executed notebook: "
                  f"{executed / f'{name}.ipynb'}", flush=True)
    finally:
        for kernel in warm.values():
            kernel.shutdown()
    print(f"[csu figures] figures are in {fig_dir}; the report: {write_report(fig_dir)}")
    return 0


def _gallery(args: argparse.Namespace) -> int:
    from .report import write_gallery

    for path in write_gallery(resolve_path(args.fig_dir), resolve_path(args.out)):
        print(f"[csu gallery] {path} ({path.stat().st_size / 1000:.0f} kB)")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from .config import parse_data_spec
    from .data import check_dataset, format_report, load_dataset

    spec = parse_data_spec(args.spec, where=str(args.spec))
    if spec is None:
        raise CsuError("csu data check: the embedded benchmark is generated by the suite; give a real dataset's spec")
    manifest = load_dataset(spec.data, progress=not args.quiet)
    report = check_dataset(manifest, spec.data, progress=not args.quiet)
    print(format_report(report, max_rows=None if args.all else 30))
    if args.csv:
        report["audio"].to_csv(args.csv, index=False)
        print(f"audio problems written to {args.csv}")
    return 1 if report["stops_a_run"] else 0


def _sweep(args: argparse.Namespace) -> int:
    from .study import load_study, run_sweep

    name, configs = load_study(args.study)
    runs_dir = resolve_path(args.runs_dir) if args.runs_dir else resolve_path(Path("runs") / name)
    result = run_sweep(configs, runs_dir, engine=args.engine, address=args.address, cpus_per_run=args.cpus_per_run,
                       gpus_per_run=args.gpus_per_run, data_dir=resolve_path(args.data_dir),
                       cache_dir=resolve_path(args.cache_dir), progress=not args.quiet, vectorise=args.vectorise,
                       workers=args.workers, threads=args.threads_per_worker)
    if result.failures:
        for run_id, error in result.failures:
            print(f"csu sweep: run {run_id} failed: {error}", file=sys.stderr)
        print(f"study {name}: {len(result.records)} of {len(configs)} runs complete in {runs_dir}; "
              f"{len(result.failures)} failed (run the same command again to retry them)", file=sys.stderr)
        return 1
    print(f"study {name}: {len(result.records)} runs complete in {runs_dir}")
    return 0


def _positive_float(name: str, minimum: float, inclusive: bool):
    """An argparse type: a float >= / > ``minimum``; a bad value names the argument."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number, got {text!r}")
        if not (value >= minimum if inclusive else value > minimum):
            raise argparse.ArgumentTypeError(f"{name} must be {'>=' if inclusive else '>'} {minimum:g}, got {text!r}")
        return value
    return parse


def _report(args: argparse.Namespace) -> int:
    from .analysis.results import report
    from .study import load_study

    target = Path(args.target)
    if target.suffix in (".yaml", ".yml"):
        name, _ = load_study(target)
        runs_dir = resolve_path(args.runs_dir) if args.runs_dir else resolve_path(Path("runs") / name)
    else:
        runs_dir = resolve_path(target)
    table = report(runs_dir, metric=args.metric)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


def _add_worker_args(parser: argparse.ArgumentParser) -> None:
    """--workers and --threads-per-worker of the commands that train sets of runs."""
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes training runs at once (default: $CSU_WORKERS, else one per CPU core)")
    parser.add_argument("--threads-per-worker", type=int, default=None, metavar="T",
                        help="torch threads of each worker (default: $CSU_THREADS_PER_WORKER, else cores / workers); "
                             "a run's numbers depend on this, not on --workers")


def _add_location_args(parser: argparse.ArgumentParser) -> None:
    """--data-dir, --cache-dir and --quiet of the commands that train."""
    parser.add_argument("--data-dir", default=None, help="default: $CSU_DATA_DIR or ~/.cache/csu-lab/data")
    parser.add_argument("--cache-dir", default=None, help="default: $CSU_CACHE_DIR or ~/.cache/csu-lab")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csu", description="csu-lab: robust audio tagging under unreliable labels")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one run (resumes an interrupted run, skips a complete one)")
    t.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    t.add_argument("--loss", default="csu",
                   help="bce | csu (the paper's form, s learned by gradient) | csu_stationary (default: csu)")
    t.add_argument("--model", default=None, help="backbone name (default: the profile's first backbone)")
    t.add_argument("--width", type=float, default=None,
                   help="width multiplier (default: the backbone's CPU size in smoke/quick, 1.0 in paper)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    t.add_argument("--corruption", default="none", help="none or KIND:RATIO, e.g. san:0.5 (KIND: san man sln missing)")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--config", default=None, help="a RunConfig JSON file (overrides the flags above)")
    t.add_argument("--run-dir", default=None, help="default: <runs-dir>/<run id>")
    t.add_argument("--runs-dir", default="runs/train")
    _add_location_args(t)
    t.set_defaults(func=_train)

    w = sub.add_parser(
        "sweep", help="train every run of a study file (YAML grid); resumes, skips complete runs",
        description="Train every run of a study file that is not complete yet; an interrupted run resumes from "
                    "its last epoch checkpoint. --engine local (default) trains one run after another in this "
                    "process; --engine ray trains one Ray task per run in parallel (pip install 'csu-lab[ray]'). "
                    "With Ray on several machines, --runs-dir, --data-dir and --cache-dir must be on a filesystem "
                    "every node sees at the same path, and csu-lab must be installed on every node.")
    w.add_argument("study", help="study file, e.g. studies/example.yaml")
    w.add_argument("--runs-dir", default=None, help="default: runs/<study name>")
    w.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: sequential, in this process (default); ray: one Ray task per run")
    w.add_argument("--address", default=None,
                   help="Ray cluster to use (e.g. 10.0.0.1:6379 or auto); default: $RAY_ADDRESS, else a local "
                        "Ray instance started for this sweep (--engine ray only)")
    w.add_argument("--cpus-per-run", type=_positive_float("--cpus-per-run", 0, False), default=None, metavar="N",
                   help="CPUs each run reserves; also its torch thread count (default 1; --engine ray only)")
    w.add_argument("--gpus-per-run", type=_positive_float("--gpus-per-run", 0, True), default=None, metavar="N",
                   help="GPUs each run reserves, fractions below 1 share a GPU (default: 1 for device cuda, or "
                        "auto on a cluster with GPUs, else 0; --engine ray only)")
    w.add_argument("--vectorise", type=int, default=1, metavar="N",
                   help="train up to N compatible runs (seeds and corruption settings of one backbone) at once as "
                        "one vectorised model; meant for small backbones on a GPU (speed-up there not measured yet; "
                        "about 2x slower on a 2-core CPU); default 1; local engine only")
    _add_worker_args(w)
    _add_location_args(w)
    w.set_defaults(func=_sweep)

    r = sub.add_parser("report", help="summary table of a study's complete runs (mean and 95%% CI over seeds)")
    r.add_argument("target", help="a study file (its runs folder is used) or a runs folder")
    r.add_argument("--runs-dir", default=None, help="with a study file: its runs folder (default: runs/<name>)")
    r.add_argument("--metric", default="test.mAP", help="a final-metrics column (default: test.mAP)")
    r.add_argument("--csv", default=None, help="also write the table to this CSV file")
    r.set_defaults(func=_report)

    d = sub.add_parser("data", help="datasets: 'csu data check DATA.yaml' reports on one without training")
    dsub = d.add_subparsers(dest="data_command", required=True)
    dc = dsub.add_parser("check", help="clip counts per split and class, unreadable/short/silent clips, label "
                                       "problems; exit 1 when a run on it would stop")
    dc.add_argument("spec", help="a data spec YAML file (dataset, root, clip_seconds, loader_options, ...)")
    dc.add_argument("--all", action="store_true", help="list every audio problem (default: the first 30)")
    dc.add_argument("--csv", default=None, help="also write the audio problems to this CSV file")
    dc.add_argument("--quiet", action="store_true", help="no progress bars")
    dc.set_defaults(func=_data_check)

    f = sub.add_parser("figures", help="execute the figure notebooks through papermill")
    f.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    f.add_argument("--only", nargs="+", default=None, metavar="NAME", help="notebooks to run (default: all figure notebooks)")
    f.add_argument("--data", default=None, metavar="DATA.yaml",
                   help="a data spec file (dataset, root, clip_seconds, ...; see csu_lib.config.data_spec): every "
                        "figure on that dataset (default: the embedded benchmark)")
    f.add_argument("--runs-dir", default="runs", help="run records and executed notebooks (default: runs)")
    f.add_argument("--fig-dir", default="figures", help="where figures are written (default: figures)")
    f.add_argument("--no-log-output", dest="log_output", action="store_false",
                   help="do not stream the notebooks' printed output (one line per trained run)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    f.add_argument("--report-only", action="store_true",
                   help="only (re)write FIG_DIR/index.html from the figures already there; trains and runs nothing")
    _add_worker_args(f)
    f.set_defaults(func=_figures)

    g = sub.add_parser("gallery", help="the README gallery: reference PNGs of figures/ scaled below 300 kB into docs/")
    g.add_argument("--fig-dir", default="figures", help="the figures of `make figures` (default: figures)")
    g.add_argument("--out", default="docs/gallery", help="where the gallery PNGs go (default: docs/gallery)")
    g.set_defaults(func=_gallery)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CsuError as exc:
        print(f"csu {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
