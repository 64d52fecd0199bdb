"""Configuration dataclasses for every stage; each serialises to JSON and back.

A :class:`RunConfig` travels with every run record and checkpoint, so a run can always be
reproduced and its numbers explained (front-end settings included). Loading is strict: an
unknown key or a bad value raises :class:`~csu_lib.core.errors.ConfigError` naming it. Names of
models, losses, datasets and methods are checked against :mod:`csu_lib.core.registry`; this
package imports no implementation.

- :mod:`.base`: the :class:`Serialisable` mixin (``to_dict``/``from_dict``/``hash``);
- :mod:`.data`: :class:`FrontendConfig`, :class:`BenchmarkConfig`, :class:`DataConfig` and presets;
- :mod:`.profiles`: the named study sizes (smoke, quick, paper: :class:`Profile`, :func:`get_profile`);
- :mod:`.data_spec`: :class:`DataSpec`, the one data description of notebooks, study files and
  ``csu figures --data`` (:func:`parse_data_spec`);
- :mod:`.run`: :class:`CorruptionConfig`, :class:`MethodConfig`, :class:`ModelConfig`,
  :class:`LossConfig`, :class:`TrainConfig`, :class:`RunConfig`;
- :mod:`.spellings`: the spellings ``san:0.5`` / ``audit:san:0.5`` (:func:`parse_condition`) and
  ``csu+mixup_or`` (:func:`parse_method_spec`), and the loss spellings such as ``csu_stationary``
  (:func:`parse_loss_spec`, :func:`loss_label`);
- :mod:`.loss_fields`: which loss reads which :class:`LossConfig` field (a run id leaves out the
  others), the default bootstrap weights and the checks of the robust losses' fields.
"""
from .base import Serialisable
from .data import BENCHMARK_PRESETS, FRONTEND_PRESETS, BenchmarkConfig, DataConfig, FrontendConfig, frontend_preset
from .data_spec import DATA_SPEC_KEYS, DataSpec, parse_data_spec
from .loss_fields import BOOTSTRAP_BETA
from .profiles import PROFILES, Profile, get_profile
from .run import (AUDIT_MAX_RATIO, CORRUPTION_KINDS, LR_SCHEDULES, CorruptionConfig, LossConfig, MethodConfig,
                  ModelConfig, RunConfig, TrainConfig, check_audit_ratio, corruption_label)
from .spellings import (LOSS_LABELS, LOSS_VARIANTS, audit_conditions, loss_label, loss_spec, method_label, method_spec,
                        parse_condition, parse_loss_spec, parse_method_spec)

__all__ = ["AUDIT_MAX_RATIO", "BENCHMARK_PRESETS", "BOOTSTRAP_BETA", "CORRUPTION_KINDS", "DATA_SPEC_KEYS", "DataSpec",
           "parse_data_spec", "FRONTEND_PRESETS", "LR_SCHEDULES", "BenchmarkConfig",
           "PROFILES", "Profile", "get_profile",
           "CorruptionConfig", "DataConfig", "FrontendConfig", "LOSS_LABELS", "LOSS_VARIANTS", "LossConfig",
           "MethodConfig", "ModelConfig", "RunConfig", "Serialisable", "TrainConfig", "audit_conditions",
           "check_audit_ratio", "corruption_label", "frontend_preset", "loss_label", "loss_spec", "method_label",
           "method_spec", "parse_condition", "parse_loss_spec", "parse_method_spec"]
