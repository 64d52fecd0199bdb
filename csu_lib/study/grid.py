"""Study grids: the run configurations of a study, from Python (:func:`grid`), from a YAML study
file (:func:`load_study`, ``csu sweep``) or for a method comparison
(:func:`comparison_configs`, :func:`mask_sweep_configs`).

Each run lives in ``<runs_dir>/<run_id>`` (:func:`run_dir_for`), where the run id contains the
hash of its configuration, so a run is trained once whichever study asks for it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence


from ..config import (MethodConfig, RunConfig, TrainConfig, audit_conditions, check_audit_ratio, parse_condition,
                      parse_data_spec, parse_method_spec)
from ..core.errors import ConfigError
from ..core.io import read_yaml_mapping
from .profiles import get_profile, run_config


def run_dir_for(config: RunConfig, runs_dir: str | os.PathLike) -> Path:
    """``<runs_dir>/<run_id>``: where a study keeps a run."""
    return Path(runs_dir) / config.run_id


def grid(profile: str, *, conditions: Sequence[str] = ("none",), losses: Optional[Sequence[str]] = None,
         models: Optional[Sequence[str]] = None, seeds: Optional[Sequence[int]] = None, epochs: Optional[int] = None,
         device: str = "auto", corruption: Optional[dict] = None, methods: Optional[Sequence[str]] = None,
         data: Any = None, runs: Optional[Sequence[str]] = None,
         train: Optional[Mapping[str, Any]] = None) -> list[RunConfig]:
    """The run configurations of a study: every condition x model x method x loss x seed, or, with
    ``runs``, every condition x model x run x seed.

    ``data``: a data spec (:func:`csu_lib.config.parse_data_spec`; None: the embedded benchmark).
    ``conditions``: ``"none"``, ``"KIND:RATIO"``, ``"published:KIND:RATIO"`` or
    ``"audit:KIND:RATIO"`` (see :func:`parse_condition`); ``corruption``:
    extra CorruptionConfig fields for the corrupted conditions (e.g. ``{"profile":
    "concentrated", "k_classes": 5}``); ``models=None``: the profile's backbones; ``seeds=None``:
    the profile's seeds. ``losses`` (default ``bce``, ``csu``) x ``methods`` (default ``none``)
    crosses every loss with every method; ``runs`` names the runs one by one instead, each
    ``"<loss>"`` or ``"<loss>+<method>"`` (:func:`parse_method_spec`), e.g. ``["bce", "csu",
    "bce+sample_oracle"]`` (not together with ``losses`` or ``methods``). ``train``: TrainConfig
    field overrides for every run (e.g. ``{"optimizer": "sgd", "lr": 0.05}``; not ``seed``,
    ``epochs`` or ``device``, which have their own arguments).
    """
    models = list(models) if models is not None else list(get_profile(profile).backbones)
    pairs = _loss_method_pairs(losses, methods, runs)
    for name, values in (("conditions", conditions), ("models", models)):
        if isinstance(values, str) or not list(values):
            raise ConfigError(f"{name} must be a non-empty list, got {values!r}")
    train = _train_overrides(train)
    seed_list = list(seeds) if seeds is not None else list(get_profile(profile).seeds)
    data = parse_data_spec(data)
    configs = []
    for cond in conditions:
        parsed = parse_condition(cond)
        if parsed["kind"] != "none":
            extra = dict(corruption or {})
            if "profile" in parsed and extra.get("profile", parsed["profile"]) != parsed["profile"]:
                raise ConfigError(f"condition {cond!r} sets corruption.profile={parsed['profile']!r} but corruption "
                                  f"sets profile={extra['profile']!r}; name one design")
            parsed.update(extra)
        for model in models:
            for loss, method in pairs:
                for seed in seed_list:
                    cfg = run_config(profile, loss=loss, model=model, seed=int(seed), epochs=epochs,
                                     device=device, corruption=parsed, data=data, train=train)
                    if method != "none":
                        cfg = cfg.replace(method=MethodConfig(name=method))
                    configs.append(cfg)
    return configs


def _loss_method_pairs(losses: Optional[Sequence[str]], methods: Optional[Sequence[str]],
                       runs: Optional[Sequence[str]]) -> list[tuple[str, str]]:
    """The (loss, method) of every run of a grid: ``runs`` parsed one by one, or every method x
    loss (defaults: ``bce``, ``csu`` and ``none``)."""
    if runs is None:
        losses = ("bce", "csu") if losses is None else losses
        methods = ("none",) if methods is None else methods
        for name, values in (("losses", losses), ("methods", methods)):
            if isinstance(values, str) or not list(values):
                raise ConfigError(f"{name} must be a non-empty list, got {values!r}")
        return [(loss, method) for method in methods for loss in losses]
    if losses is not None or methods is not None:
        raise ConfigError("runs names every run ('<loss>' or '<loss>+<method>'); give either runs or "
                          "losses/methods, not both")
    if isinstance(runs, str) or not list(runs):
        raise ConfigError(f"runs must be a non-empty list of '<loss>' or '<loss>+<method>', got {runs!r}")
    twice = sorted({str(r) for r in runs if list(runs).count(r) > 1})
    if twice:
        raise ConfigError(f"runs lists {twice} more than once")
    pairs = []
    for spec in runs:
        try:
            pairs.append(parse_method_spec(spec))
        except ConfigError as exc:
            raise ConfigError(f"runs: {exc}") from None
    return pairs


#: TrainConfig fields a study's ``train`` overrides may not set: each has its own key.
TRAIN_OWN_KEYS = {"seed": "seeds", "epochs": "epochs", "device": "device"}


def _train_overrides(train: Optional[Mapping[str, Any]]) -> dict:
    """``train`` (TrainConfig field overrides for every run of a grid) after checking it: a
    mapping of known fields with valid values, none of :data:`TRAIN_OWN_KEYS`; a bad one is a
    :class:`ConfigError` starting ``train:``."""
    if train is None:
        return {}
    if not isinstance(train, Mapping):
        raise ConfigError(f"train: a mapping of TrainConfig fields, e.g. {{optimizer: sgd, lr: 0.05}}, got {train!r}")
    own = sorted(set(train) & set(TRAIN_OWN_KEYS))
    if own:
        raise ConfigError(f"train: {own} have keys of their own: use {', '.join(TRAIN_OWN_KEYS[k] for k in own)}")
    try:
        TrainConfig().replace(**train)
    except ConfigError as exc:
        raise ConfigError(f"train: {exc}") from None
    return dict(train)


#: The keys a study file may hold (see :func:`load_study`).
STUDY_KEYS = ("name", "profile", "conditions", "losses", "models", "methods", "runs", "seeds", "epochs", "device",
              "corruption", "data", "train")


def load_study(path: str | os.PathLike, *, profile: Optional[str] = None) -> tuple[str, list[RunConfig]]:
    """A study file (YAML) -> (study name, its run configurations).

    Keys (all optional but ``profile``): ``name`` (default: the file's stem), ``profile``
    (smoke | quick | paper), ``conditions`` (``none`` / ``KIND:RATIO`` / ``audit:KIND:RATIO``),
    ``losses``, ``models``, ``methods``, ``runs`` (instead of ``losses`` and ``methods``: the list
    of runs, each ``<loss>`` or ``<loss>+<method>``), ``seeds`` (default: the profile's),
    ``epochs``, ``device``, ``corruption`` (extra CorruptionConfig fields for the corrupted
    conditions), ``data`` (a data spec, its ``root`` relative to the study file; or the path of a
    data YAML file; default: the embedded benchmark), ``train`` (TrainConfig field overrides for
    every run, e.g. ``{optimizer: sgd, lr: 0.05}``). The grid is every condition x model x method x
    loss x seed, or condition x model x run x seed (:func:`grid`). ``profile`` (the argument)
    replaces the file's profile, e.g. ``"smoke"`` to try a study at toy size. An unknown key or
    value stops with an error naming it and the file.
    """
    path = Path(path)
    spec = read_yaml_mapping(path, "study file", STUDY_KEYS)
    if "profile" not in spec:
        raise ConfigError(f"{path}: 'profile' is required (smoke | quick | paper)")
    kwargs = {k: spec[k] for k in ("conditions", "losses", "models", "methods", "runs", "seeds", "epochs", "device",
                                   "corruption", "train") if k in spec}
    try:
        configs = grid(profile or spec["profile"], data=_study_data(spec.get("data"), path), **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return str(spec.get("name") or path.stem), configs


def _study_data(data: Any, path: Path) -> Any:
    """A study file's ``data``: a mapping whose relative ``root`` is taken from the study file's
    folder, or a data YAML file named relative to it."""
    if isinstance(data, str):
        return parse_data_spec(data if Path(data).is_absolute() else path.parent / data, where=f"{path}: data")
    if isinstance(data, dict) and data.get("root") and not Path(str(data["root"])).expanduser().is_absolute():
        data = {**data, "root": str((path.parent / str(data["root"])).resolve())}
    return parse_data_spec(data, where=f"{path}: data")


#: The losses of the class-noise audit: CSU (the paper's form), its stationary variant, two-sided
#: CSU, and plain BCE (the reference estimator: its network's training loss per class).
AUDIT_LOSSES = ("csu", "csu_stationary", "csu2", "bce")


def audit_configs(profile: str, *, kinds: Sequence[str] = ("san", "man", "sln", "missing"), ratio: float = 0.5,
                  losses: Sequence[str] = ("csu",), models: Optional[Sequence[str]] = None,
                  seeds: Optional[Sequence[int]] = None, epochs: Optional[int] = None,
                  device: str = "auto", data: Any = None) -> list[RunConfig]:
    """The runs of the class-noise audit (``corruption.profile="audit"``, :mod:`csu_lib.corruption.audit_design`):
    every kind x model x loss x seed, corrupted classes at levels up to ``ratio`` beside untouched
    control classes, the corruption drawn anew for every seed. ``losses``: :data:`AUDIT_LOSSES`,
    at least one that learns a sigma; ``bce`` adds plain BCE runs of the same design, whose
    network's per-class training loss is an estimator of its own (``bce_loss``)."""
    if isinstance(kinds, str) or not list(kinds) or not set(kinds) <= {"san", "man", "sln", "missing"}:
        raise ConfigError(f"audit_kinds must be a non-empty list of san, man, sln, missing, got {kinds!r}")
    check_audit_ratio(ratio, "audit_ratio")
    bad = [loss for loss in losses if loss not in AUDIT_LOSSES]
    if bad or isinstance(losses, str) or not set(losses) - {"bce"}:
        raise ConfigError(f"the audit reads a learned sigma: losses must be some of {', '.join(AUDIT_LOSSES)}, with "
                          f"at least one CSU form, got {losses!r}")
    return grid(profile, conditions=audit_conditions(kinds, ratio), losses=list(losses), models=models, seeds=seeds,
                epochs=epochs, device=device, data=data)


def comparison_configs(profile: str, condition: str, methods: Sequence[str], seeds: Sequence[int], *,
                       method_options: Optional[Mapping[str, Any]] = None,
                       **run_config_kwargs) -> dict[str, list[RunConfig]]:
    """``{method spec: [one RunConfig per seed]}`` on one corruption ``condition`` (e.g.
    ``"san:0.5"``). ``method_options``: MethodConfig field overrides for every method (e.g.
    ``{"mask_percent": 2}``); other keywords go to :func:`csu_lib.study.run_config`. A teacher
    method's spec may end in ``@oof<K>`` (e.g. ``"bce+teacher_mask@oof5"``): its teacher is then
    out-of-fold with K folds (``MethodConfig.teacher_folds``), next to the in-sample one."""
    corruption = parse_condition(condition)
    if "name" in dict(method_options or {}):
        raise ConfigError("method_options cannot set 'name'; name the method in methods ('<loss>+<method>')")
    if not list(methods):
        raise ConfigError("methods must name at least one method, e.g. ['bce', 'csu+mixup_or']")
    if not list(seeds):
        raise ConfigError("seeds must hold at least one seed")
    out: dict[str, list] = {}
    for spec in methods:
        base, variant = _method_variant(spec)
        loss, name = parse_method_spec(base)
        options = {**dict(method_options or {}), **variant}
        out[str(spec)] = [run_config(profile, loss=loss, seed=int(seed), corruption=corruption, **run_config_kwargs)
                          .replace(method=MethodConfig(name=name, **options))
                          for seed in seeds]
    return out


def _method_variant(spec: str) -> tuple[str, dict]:
    """``"bce+teacher_mask@oof5"`` -> ``("bce+teacher_mask", {"teacher_folds": 5})``; a spec
    without ``@`` -> ``(spec, {})``."""
    base, at, variant = str(spec).strip().partition("@")
    if not at:
        return base, {}
    match = re.fullmatch(r"oof(\d+)", variant.strip())
    if match is None or int(match.group(1)) < 2:
        raise ConfigError(f"method {spec!r}: the one variant is '@oof<K>' (an out-of-fold teacher of K >= 2 "
                          "folds), e.g. 'bce+teacher_mask@oof5'")
    return base.strip(), {"teacher_folds": int(match.group(1))}


def mask_sweep_configs(profile: str, condition: str, percents: Sequence[float], seeds: Sequence[int], *,
                       loss: str = "bce", method_options: Optional[Mapping[str, Any]] = None,
                       **run_config_kwargs) -> dict[float, list[RunConfig]]:
    """``{percent: [RunConfig per seed]}`` for Fonseca's performance-vs-%-discarded sweep of
    ``teacher_mask``; 0 % is the plain ``loss`` run (no teacher), the sweep's reference point."""
    options = {k: v for k, v in dict(method_options or {}).items() if k != "mask_percent"}
    out: dict[float, list] = {}
    for p in sorted({0.0, *(float(p) for p in percents)}):
        spec = loss if p == 0 else f"{loss}+teacher_mask"
        opts = {} if p == 0 else {**options, "mask_percent": p}
        out[p] = comparison_configs(profile, condition, [spec], seeds, method_options=opts,
                                    **run_config_kwargs)[spec]
    return out


def unique_configs(*groups: Mapping[Any, Sequence[RunConfig]]) -> list[RunConfig]:
    """The configs of all groups, each run id once, in first-seen order."""
    seen: dict[str, Any] = {}
    for group in groups:
        for configs in group.values():
            for c in configs:
                seen.setdefault(c.run_id, c)
    return list(seen.values())
