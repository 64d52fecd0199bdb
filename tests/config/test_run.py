"""Tests of csu_lib.config: JSON round trips, the configuration hash, and clear ConfigErrors.

Every bad value must raise :class:`csu_lib.core.errors.ConfigError` (a ValueError) whose message names
the culprit, so a failed sweep says what to fix.
"""
from __future__ import annotations

import json

import pytest

from csu_lib.config import (BENCHMARK_PRESETS, CORRUPTION_KINDS, FRONTEND_PRESETS, BenchmarkConfig, CorruptionConfig,
                            DataConfig, FrontendConfig, LossConfig, ModelConfig, RunConfig, TrainConfig,
                            frontend_preset, parse_condition)
from csu_lib.core.errors import ConfigError, CsuError
from csu_lib.study import audit_configs, grid


def _reverse_keys(obj):
    """The same mapping with every level's key order reversed."""
    if isinstance(obj, dict):
        return {k: _reverse_keys(obj[k]) for k in reversed(list(obj))}
    if isinstance(obj, list):
        return [_reverse_keys(v) for v in obj]
    return obj


def _non_default() -> RunConfig:
    """A RunConfig where every section differs from its defaults (tuples and Optionals included)."""
    return RunConfig(
        data=DataConfig(benchmark=BenchmarkConfig(n_families=3, classes_per_family=4, clips_per_class=12,
                                                  split_fractions=(0.6, 0.2, 0.2), clip_seconds=1.5,
                                                  multi_label=True, max_events=2, snr_db=(0.0, 6.0),
                                                  seed=9),
                        clip_seconds=1.0),
        frontend=frontend_preset("psl16k"),
        corruption=CorruptionConfig(kind="sln", ratio=0.3, target="similar", profile="graded",
                                    soft_range=(0.65, 0.85), nested=False, seed=4),
        model=ModelConfig(width=0.5, dropout=0.1),
        loss=LossConfig(name="csu", csu_init=0.5, csu_clamp=(-3.0, 4.0), csu_lr=3e-3, csu_scale="half",
                        csu_class_reduction="mean"),
        train=TrainConfig(epochs=7, batch_size=16, lr=5e-4, optimizer="adamw", weight_decay=1e-4, seed=3,
                          device="cpu", amp=False, early_stopping_patience=None),
    )


# ---------------------------------------------------------------------------------------------
# Round trips and hash


@pytest.mark.parametrize("make", [RunConfig, _non_default], ids=["default", "non_default"])
def test_dict_round_trip(make):
    cfg = make()
    d = cfg.to_dict()
    assert isinstance(d, dict) and set(d) == {"data", "frontend", "corruption", "model", "loss", "method", "train"}
    json.dumps(d)  # plain JSON types only
    back = RunConfig.from_dict(d)
    assert back == cfg
    assert back.to_dict() == d
    # tuples come back as tuples (not lists), so the frozen dataclasses compare and hash equal
    assert isinstance(back.data.benchmark.split_fractions, tuple)
    assert isinstance(back.loss.csu_clamp, tuple)
    assert isinstance(back.data.benchmark, BenchmarkConfig)
    assert back.hash() == cfg.hash()


@pytest.mark.parametrize("make", [RunConfig, _non_default], ids=["default", "non_default"])
def test_json_round_trip(make):
    cfg = make()
    text = cfg.to_json()
    assert json.loads(text) == cfg.to_dict()
    back = RunConfig.from_json(text)
    assert back == cfg and back.hash() == cfg.hash() and back.run_id == cfg.run_id


def test_section_round_trips():
    for obj in (FrontendConfig(), frontend_preset("panns32k"), BenchmarkConfig(), CorruptionConfig(kind="man"),
                ModelConfig(), LossConfig(name="csu"), TrainConfig(device="cuda:1")):
        assert type(obj).from_dict(obj.to_dict()) == obj
        assert type(obj).from_json(obj.to_json()) == obj


def test_hash_stable_under_key_order_and_formatting():
    cfg = _non_default()
    d = cfg.to_dict()
    rev = _reverse_keys(d)
    assert list(rev) != list(d)
    assert list(rev["train"]) != list(d["train"])
    assert RunConfig.from_dict(rev).hash() == cfg.hash()
    # formatting of the JSON text does not matter either
    compact = json.dumps(rev, separators=(",", ":"))
    assert RunConfig.from_json(compact).hash() == cfg.hash()
    # stable across calls and the hash length option is a prefix
    assert cfg.hash() == cfg.hash() and len(cfg.hash()) == 12
    assert cfg.hash(20)[:12] == cfg.hash()
    assert RunConfig().hash() == RunConfig().hash()


@pytest.mark.parametrize("section,field,value", [
    ("train", "seed", 1),
    ("train", "lr", 2e-3),
    ("loss", "name", "csu"),
    ("loss", "csu_clamp", (-4.0, 5.0)),
    ("corruption", "ratio", 0.1),
    ("frontend", "n_mels", 128),
    ("model", "dropout", 0.3),
])
def test_hash_changes_when_a_field_changes(section, field, value):
    base = RunConfig()
    changed = base.replace(**{section: getattr(base, section).replace(**{field: value})})
    assert changed != base
    assert changed.hash() != base.hash()
    assert changed.run_id != base.run_id


#: Run ids of default configurations computed on the tree before ``train.momentum`` and
#: ``train.nesterov`` existed (commit e959309): adding SGD must leave every Adam/AdamW id alone.
IDS_BEFORE_SGD = {"bce": "bce-small_cnn-s0-6161a52df2", "csu": "csu-small_cnn-s0-59cb256f0c",
                  "adamw": "bce-small_cnn-s0-9832d39f5f"}


def test_sgd_fields_leave_existing_ids_alone():
    assert RunConfig().run_id == IDS_BEFORE_SGD["bce"]
    # (that CSU id is the stationary variant's since CSU's default became the paper's form)
    assert RunConfig(loss=LossConfig(name="csu", csu_fit="stationary")).run_id == IDS_BEFORE_SGD["csu"]
    adamw = RunConfig(train=TrainConfig(optimizer="adamw", weight_decay=0.01))
    assert adamw.run_id == IDS_BEFORE_SGD["adamw"]
    # Adam and AdamW ignore momentum and nesterov, and so do their ids
    assert RunConfig(train=TrainConfig(momentum=0.5, nesterov=True)).run_id == IDS_BEFORE_SGD["bce"]
    assert adamw.replace(train=adamw.train.replace(momentum=0.0)).run_id == IDS_BEFORE_SGD["adamw"]
    # SGD ids are new, and depend on momentum and nesterov
    sgd = RunConfig(train=TrainConfig(optimizer="sgd"))
    ids = {sgd.run_id, RunConfig(train=TrainConfig(optimizer="sgd", momentum=0.5)).run_id,
           RunConfig(train=TrainConfig(optimizer="sgd", nesterov=True)).run_id}
    assert len(ids) == 3 and IDS_BEFORE_SGD["bce"] not in ids
    back = RunConfig.from_stored(sgd.to_dict())
    assert back == sgd and back.run_id == sgd.run_id


def test_hash_changes_with_nested_benchmark_field():
    base = RunConfig()
    changed = base.replace(data=DataConfig(benchmark=BenchmarkConfig(seed=1)))
    assert changed.hash() != base.hash()


def test_hash_does_not_depend_on_int_vs_float_spelling():
    cfg = RunConfig(train=TrainConfig(lr=1))  # an int where a float is declared
    assert cfg == RunConfig(train=TrainConfig(lr=1.0))
    assert RunConfig.from_dict(cfg.to_dict()).hash() == cfg.hash()


def test_run_id_names_loss_model_seed():
    cfg = _non_default()
    assert cfg.run_id.startswith("csu-small_cnn-s3-")
    assert cfg.run_id.endswith(cfg.hash(10))


# ---------------------------------------------------------------------------------------------
# Clear errors


def _raises(fn, *needles):
    with pytest.raises(ConfigError) as info:
        fn()
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert isinstance(info.value, (CsuError, ValueError))
    return msg


def test_unknown_loss_name():
    _raises(lambda: LossConfig(name="focal"), "focal", "bce", "csu", "loss")
    _raises(lambda: RunConfig.from_dict({"loss": {"name": "focal"}}), "focal", "bce", "csu")


def test_unknown_model_name():
    _raises(lambda: ModelConfig(name="resnet50"), "resnet50", "small_cnn", "model")
    _raises(lambda: RunConfig.from_dict({"model": {"name": "resnet50"}}), "resnet50")


@pytest.mark.parametrize("epochs", [0, -3])
def test_non_positive_epochs(epochs):
    _raises(lambda: TrainConfig(epochs=epochs), "train.epochs", str(epochs))
    _raises(lambda: RunConfig.from_dict({"train": {"epochs": epochs}}), "train.epochs")


@pytest.mark.parametrize("epochs", [2.5, True, "3"])
def test_non_integer_epochs(epochs):
    _raises(lambda: TrainConfig(epochs=epochs), "train.epochs")


def test_unknown_key_top_level_and_nested():
    msg = _raises(lambda: RunConfig.from_dict({"trian": {"epochs": 3}}), "trian")
    assert "train" in msg  # the valid keys are listed
    _raises(lambda: RunConfig.from_dict({"train": {"epoch": 3}}), "epoch", "RunConfig.train", "epochs")
    _raises(lambda: RunConfig.from_dict({"data": {"benchmark": {"n_family": 3}}}), "n_family",
            "RunConfig.data.benchmark")


def test_replace_with_unknown_field():
    _raises(lambda: TrainConfig().replace(epoch=3), "epoch")
    assert TrainConfig().replace(epochs=3).epochs == 3


def test_section_must_be_a_mapping():
    _raises(lambda: RunConfig.from_dict({"train": 5}), "RunConfig.train")


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_corruption_ratio_outside_unit_interval(ratio):
    _raises(lambda: CorruptionConfig(kind="san", ratio=ratio), "corruption.ratio")


@pytest.mark.parametrize("ratio", [0, 0.0, 0.5, 1, 1.0])
def test_corruption_ratio_edges_accepted(ratio):
    assert CorruptionConfig(kind="san", ratio=ratio).ratio == ratio


def test_unknown_corruption_kind():
    msg = _raises(lambda: CorruptionConfig(kind="flip"), "flip")
    for kind in CORRUPTION_KINDS:
        assert kind in msg


def test_unknown_frontend_preset():
    msg = _raises(lambda: frontend_preset("mfcc40"), "mfcc40")
    for name in FRONTEND_PRESETS:
        assert name in msg
    assert frontend_preset("panns32k").sample_rate == 32000


def test_unknown_dataset_name():
    msg = _raises(lambda: DataConfig(dataset="esc-50"), "esc-50", "esc50", "embedded")
    assert "dataset" in msg


def test_real_dataset_needs_root():
    _raises(lambda: DataConfig(dataset="esc50"), "data.root", "esc50")
    assert DataConfig(dataset="esc50", root="/somewhere").root == "/somewhere"


@pytest.mark.parametrize("device", ["gpu", "CPU", "", "tpu:0"])
def test_bad_device_string(device):
    _raises(lambda: TrainConfig(device=device), "train.device", repr(device))


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_good_device_strings(device):
    assert TrainConfig(device=device).device == device


@pytest.mark.parametrize("device", ["cudafoo", "cuda:x", None, 0])
def test_malformed_device_values(device):
    _raises(lambda: TrainConfig(device=device), "train.device")


def test_frontend_benchmark_sample_rate_mismatch():
    msg = _raises(lambda: RunConfig(frontend=frontend_preset("panns32k")), "frontend.sample_rate",
                  "data.benchmark.sample_rate", "32000", "16000")
    assert msg
    # matching rates are fine
    cfg = RunConfig(frontend=frontend_preset("panns32k"),
                    data=DataConfig(benchmark=BenchmarkConfig(sample_rate=32000)))
    assert cfg.frontend.sample_rate == cfg.data.benchmark.sample_rate == 32000
    # and the mismatch is caught when loading from a dict too
    d = RunConfig().to_dict()
    d["frontend"] = frontend_preset("panns32k").to_dict()
    _raises(lambda: RunConfig.from_dict(d), "frontend.sample_rate")



def test_run_config_frontend_preset_sets_the_benchmark_rate():
    from csu_lib.study import run_config

    cfg = run_config("smoke", frontend="panns32k")
    assert cfg.frontend == frontend_preset("panns32k")
    assert cfg.data.benchmark.sample_rate == 32000
    assert run_config("smoke").data.benchmark.sample_rate == 16000 == run_config("smoke").frontend.sample_rate
    _raises(lambda: run_config("smoke", frontend="mfcc40"), "mfcc40")
    # an explicit benchmark rate that disagrees is refused, not overridden
    _raises(lambda: run_config("smoke", frontend="panns32k", benchmark={"sample_rate": 16000}), "frontend.sample_rate")

def test_other_value_checks_name_the_field():
    _raises(lambda: FrontendConfig(f_max=9000.0), "frontend.f_max")
    _raises(lambda: FrontendConfig(win_length=1024), "frontend.win_length")
    _raises(lambda: BenchmarkConfig(split_fractions=(0.8, 0.1, 0.2)), "benchmark.split_fractions")
    _raises(lambda: BenchmarkConfig(clips_per_class=2), "benchmark.clips_per_class")
    _raises(lambda: LossConfig(name="csu", csu_init=6.0), "loss.csu_clamp")
    _raises(lambda: LossConfig(csu_scale="quarter"), "loss.csu_scale", "quarter")
    _raises(lambda: LossConfig(csu_class_reduction="max"), "loss.csu_class_reduction")
    _raises(lambda: TrainConfig(batch_size=0), "train.batch_size")
    _raises(lambda: TrainConfig(optimizer="rmsprop"), "train.optimizer", "rmsprop")
    _raises(lambda: TrainConfig(optimizer="sgd", momentum=1.0), "train.momentum")
    _raises(lambda: TrainConfig(optimizer="sgd", momentum=-0.1), "train.momentum")
    _raises(lambda: TrainConfig(optimizer="sgd", momentum="0.9"), "train.momentum")
    _raises(lambda: TrainConfig(optimizer="sgd", nesterov=1), "train.nesterov")
    _raises(lambda: TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True), "train.nesterov", "train.momentum > 0")
    _raises(lambda: CorruptionConfig(target="nearest"), "corruption.target", "nearest")
    _raises(lambda: CorruptionConfig(soft_range=(0.9, 0.6)), "corruption.soft_range")


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, CsuError)


def test_presets_are_valid_and_distinct():
    assert set(BENCHMARK_PRESETS) == {"smoke", "quick", "paper"}
    hashes = {cfg.hash() for cfg in BENCHMARK_PRESETS.values()}
    assert len(hashes) == 3
    assert len({cfg.hash() for cfg in FRONTEND_PRESETS.values()}) == len(FRONTEND_PRESETS)


# ---------------------------------------------------------------------------------------------
# The audit design's condition spelling (audit:<kind>:<ratio>)


def test_audit_condition_spelling_and_label():
    assert parse_condition("audit:san:0.5") == {"kind": "san", "ratio": 0.5, "profile": "audit"}
    assert parse_condition("audit:man") == {"kind": "man", "ratio": 0.5, "profile": "audit"}  # bare kind: 0.5
    assert CorruptionConfig(**parse_condition("audit:sln:0.3")).label == "sln 30% (audit)"
    assert CorruptionConfig(kind="san", ratio=0.5).label == "san 50%"  # uniform labels unchanged
    assert CorruptionConfig(kind="man", ratio=0.15, profile="concentrated").label == "man 15% (concentrated)"
    assert CorruptionConfig(kind="none", profile="audit").label == "clean"


@pytest.mark.parametrize("text, message", [
    ("audit:none", "condition 'audit:none': the audit design needs a kind and a ratio"),
    ("audit:san:0.6", r"condition 'audit:san:0.6': the audit ratio must lie in \(0, 0.5\]"),
    ("audit:san:0", r"the audit ratio must lie in \(0, 0.5\] .*got 0.0"),
    ("audit:noisy:0.3", "condition 'audit:noisy:0.3': unknown corruption type 'noisy'"),
    ("audit:san:x", "condition 'audit:san:x': ratio 'x' is not a number"),
    ("published:audit:man:0.3", "unknown corruption type 'audit'"),
])
def test_audit_condition_errors_name_the_condition(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_condition(text)


def test_the_audit_runs_are_built_from_the_audit_spelling():
    # the same message for a bad ratio, whichever way the design is asked for
    with pytest.raises(ConfigError) as by_condition:
        parse_condition("audit:san:0.6")
    with pytest.raises(ConfigError) as by_runs:
        audit_configs("smoke", ratio=0.6)
    assert str(by_condition.value).partition(" must lie")[2] == str(by_runs.value).partition(" must lie")[2]
    # the run ids are those of the earlier spelling (kind:ratio with a profile override)
    configs = audit_configs("smoke", kinds=["san", "missing"], seeds=[0, 1])
    before = grid("smoke", conditions=["san:0.5", "missing:0.5"], losses=["csu"], seeds=[0, 1],
                  corruption={"profile": "audit"})
    assert [c.run_id for c in configs] == [c.run_id for c in before]
    bce = grid("smoke", conditions=["audit:san:0.25"], losses=["bce"], seeds=[3])
    assert (bce[0].corruption.profile, bce[0].corruption.ratio, bce[0].corruption.seed) == ("audit", 0.25, 3)
    with pytest.raises(ConfigError, match="name one design"):
        grid("smoke", conditions=["audit:san:0.5"], corruption={"profile": "graded"})


def test_csu_is_the_papers_form_and_csu_stationary_names_the_variant():
    """"csu" learns s by the optimiser (the paper's form); "csu_stationary" is the same loss with
    the stationary fit, accepted wherever a loss is named (grid, method spec, run_config) and
    labelled apart in figures."""
    from csu_lib.config import loss_label, loss_spec, method_label, parse_loss_spec, parse_method_spec
    from csu_lib.study import comparison_configs, grid, run_config

    assert LossConfig(name="csu").csu_fit == "gradient"
    assert parse_loss_spec("csu_stationary") == ("csu", {"csu_fit": "stationary"})
    assert parse_loss_spec("csu") == ("csu", {}) and parse_loss_spec("csu2_stationary")[0] == "csu2"
    assert parse_method_spec("csu_stationary+mixup_or") == ("csu_stationary", "mixup_or")
    assert parse_method_spec("csu_stationary") == ("csu_stationary", "none")
    configs = grid("smoke", losses=["bce", "csu", "csu_stationary"], seeds=[0])
    assert [(c.loss.name, c.loss.csu_fit) for c in configs] == [("bce", "gradient"), ("csu", "gradient"),
                                                                 ("csu", "stationary")]
    assert [loss_spec(c.loss) for c in configs] == ["bce", "csu", "csu_stationary"]
    assert [loss_label(c.loss) for c in configs] == ["BCE", "CSU", "CSU (stationary)"]
    assert loss_label("csu_stationary") == "CSU (stationary)" and loss_label("gce") == "gce"
    assert configs[2] == run_config("smoke", loss="csu", loss_options={"csu_fit": "stationary"})
    assert configs[2].run_id != configs[1].run_id
    (mixed,) = comparison_configs("smoke", "san:0.5", ["csu_stationary+mixup_or"], [0]).values()
    assert mixed[0].loss.csu_fit == "stationary" and method_label(mixed[0]) == "csu_stationary+mixup_or"
    with pytest.raises(ConfigError, match="csu_stationary"):
        parse_method_spec("csu_fancy+mixup_or")
