"""Running a set of runs: each run lives in ``<runs_dir>/<run_id>`` where the run id contains
the hash of its configuration. Complete runs are skipped, incomplete ones resumed, so a study
interrupted at any point finishes when the same call is made again.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence


from .config import RunConfig
from .records import RunRecord, is_complete, load_run
from .train import PreparedData, prepare_data, train_run
from .vectorised import plan_groups, train_group


def run_dir_for(config: RunConfig, runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir) / config.run_id


def run_all(configs: Iterable[RunConfig], runs_dir: str | os.PathLike, *,
            data_dir: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
            progress: bool = True, vectorise: int = 1) -> list[RunRecord]:
    """Train every config not yet complete (sequentially) and return all records in order.

    Runs that share the same data and corruption reuse one prepared dataset (features are
    read once). ``vectorise`` > 1 trains up to that many compatible runs at once (seeds and
    corruption settings of one backbone; :mod:`csu_lib.vectorised`, for a GPU).
    """
    configs = list(configs)
    prepared: dict[str, PreparedData] = {}
    todo = [c for c in configs if not is_complete(run_dir_for(c, runs_dir))]
    if progress:
        print(f"{len(configs)} runs: {len(configs) - len(todo)} complete, {len(todo)} to train", flush=True)

    def data_for(config: RunConfig) -> PreparedData:
        key = config.data.hash() + config.frontend.hash() + config.corruption.hash()
        if key not in prepared:
            prepared[key] = prepare_data(config, data_dir=data_dir, cache_dir=cache_dir, progress=progress)
        return prepared[key]

    done = 0
    for group in plan_groups(todo, vectorise):
        t0 = time.perf_counter()
        dirs = [run_dir_for(c, runs_dir) for c in group]
        if len(group) == 1:
            group_records = [train_run(group[0], dirs[0], data=data_for(group[0]), progress=progress)]
        else:
            group_records = train_group(group, dirs, data=[data_for(c) for c in group], progress=progress)
        seconds = time.perf_counter() - t0
        for config, rd, record in zip(group, dirs, group_records):
            done += 1
            if progress:
                together = f" ({len(group)} vectorised)" if len(group) > 1 else ""
                print(f"[{done}/{len(todo)}] {rd.name} ({condition_label(config.corruption)}): test mAP "
                      f"{record.final_metrics['test']['mAP']:.4f} in {seconds:.0f} s{together}", flush=True)
    return [load_run(run_dir_for(c, runs_dir)) for c in configs]


def parse_condition(text: str) -> dict:
    """``"none"``, ``"san:0.5"``, ``"man:0.3"`` ... -> corruption overrides ``{kind, ratio}``."""
    from .config import CORRUPTION_KINDS
    from .errors import ConfigError

    kind, _, ratio = str(text).partition(":")
    if kind not in CORRUPTION_KINDS:
        raise ConfigError(f"condition {text!r}: unknown corruption type {kind!r}; "
                          f"use one of {', '.join(CORRUPTION_KINDS)} (optionally ':ratio')")
    if kind == "none":
        return {"kind": "none", "ratio": 0.0}
    try:
        r = float(ratio) if ratio else 0.5
    except ValueError:
        raise ConfigError(f"condition {text!r}: ratio {ratio!r} is not a number") from None
    if not 0.0 <= r <= 1.0:
        raise ConfigError(f"condition {text!r}: ratio {r} is outside [0, 1]")
    return {"kind": kind, "ratio": r}


def condition_label(corruption) -> str:
    """``clean`` or e.g. ``san 50%`` for a CorruptionConfig."""
    return corruption.label


def project_root(start: Optional[str | os.PathLike] = None) -> Path:
    """The repository root (the nearest folder upwards holding ``pyproject.toml`` and
    ``csu_lib``), or the current directory when there is none (an installed package)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "csu_lib").is_dir():
            return folder
    return here


def resolve_path(path: Optional[str | os.PathLike], default: Optional[Path] = None) -> Optional[Path]:
    """A relative path is taken from the project root, so notebooks behave the same whether the
    kernel starts in ``notebooks/`` (JupyterLab) or at the root (papermill, ``make``)."""
    if path is None:
        return default
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def grid(profile: str, *, conditions: Sequence[str] = ("none",), losses: Sequence[str] = ("bce", "csu"),
         models: Sequence[str] = ("small_cnn",), seeds: Optional[Sequence[int]] = None, epochs: Optional[int] = None,
         device: str = "auto", corruption: Optional[dict] = None, methods: Sequence[str] = ("none",)) -> list[RunConfig]:
    """The run configurations of a study: every condition x model x method x loss x seed.

    ``conditions``: ``"none"`` or ``"KIND:RATIO"`` (see :func:`parse_condition`); ``corruption``:
    extra CorruptionConfig fields for the corrupted conditions (e.g. ``{"profile":
    "concentrated", "k_classes": 5}``); ``seeds=None``: the profile's seeds.
    """
    from .config import MethodConfig
    from .errors import ConfigError
    from .profiles import get_profile, run_config

    for name, values in (("conditions", conditions), ("losses", losses), ("models", models), ("methods", methods)):
        if isinstance(values, str) or not list(values):
            raise ConfigError(f"{name} must be a non-empty list, got {values!r}")
    seed_list = list(seeds) if seeds is not None else list(get_profile(profile).seeds)
    configs = []
    for cond in conditions:
        parsed = parse_condition(cond)
        if parsed["kind"] != "none":
            parsed.update(corruption or {})
        for model in models:
            for method in methods:
                for loss in losses:
                    for seed in seed_list:
                        cfg = run_config(profile, loss=loss, model=model, seed=int(seed), epochs=epochs,
                                         device=device, corruption=parsed)
                        if method != "none":
                            cfg = cfg.replace(method=MethodConfig(name=method))
                        configs.append(cfg)
    return configs


#: The keys a study file may hold (see :func:`load_study`).
STUDY_KEYS = ("name", "profile", "conditions", "losses", "models", "methods", "seeds", "epochs", "device",
              "corruption")


def load_study(path: str | os.PathLike) -> tuple[str, list[RunConfig]]:
    """A study file (YAML) -> (study name, its run configurations).

    Keys (all optional but ``profile``): ``name`` (default: the file's stem), ``profile``
    (smoke | quick | paper), ``conditions`` (``none`` / ``KIND:RATIO``), ``losses``, ``models``,
    ``methods``, ``seeds`` (default: the profile's), ``epochs``, ``device``, ``corruption``
    (extra CorruptionConfig fields for the corrupted conditions). The grid is every condition x
    model x method x loss x seed (:func:`grid`). An unknown key or value stops with an error
    naming it and the file.
    """
    import yaml

    from .errors import ConfigError, CsuError

    path = Path(path)
    if not path.is_file():
        raise CsuError(f"study file {path} not found")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a study is a mapping of {', '.join(STUDY_KEYS)}")
    unknown = sorted(set(spec) - set(STUDY_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {', '.join(STUDY_KEYS)}")
    if "profile" not in spec:
        raise ConfigError(f"{path}: 'profile' is required (smoke | quick | paper)")
    kwargs = {k: spec[k] for k in ("conditions", "losses", "models", "methods", "seeds", "epochs", "device",
                                   "corruption") if k in spec}
    try:
        configs = grid(spec["profile"], **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return str(spec.get("name") or path.stem), configs


def report(runs_dir: str | os.PathLike, *, metric: str = "test.mAP"):
    """Summary table of the complete runs below ``runs_dir``: one row per setting (condition,
    model, method, loss) with the mean, a Student-t 95% CI over seeds and the seed count."""
    from .errors import CsuError
    from .records import load_runs
    from .results import summarise

    runs = load_runs(runs_dir)
    if runs.empty:
        raise CsuError(f"no complete run below {runs_dir}")
    if metric not in runs.columns:
        raise CsuError(f"unknown metric {metric!r}; e.g. test.mAP, test.mAUC, test.d_prime, test.lwlrap")
    return summarise(runs, metric=metric).drop(columns=["seeds"])
