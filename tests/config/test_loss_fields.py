"""The fields of the sample-wise robust losses in LossConfig (csu_lib/config/loss_fields.py): their
defaults, their checks (a clear error naming the field), and run ids: the fields leave every
stored BCE and CSU id as it was, and a loss's id ignores the fields of the other losses."""
from __future__ import annotations

import pytest

from csu_lib.config import BOOTSTRAP_BETA, LossConfig, RunConfig
from csu_lib.core.errors import ConfigError
from csu_lib.study import run_config

ROBUST_DEFAULTS = {"gce_q": 0.7, "sce_alpha": 0.1, "sce_beta": 1.0, "sce_log_zero": -4.0, "bootstrap_kind": "soft",
                   "bootstrap_beta": None, "bootstrap_detach": True, "asl_gamma_pos": 0.0, "asl_gamma_neg": 4.0,
                   "asl_margin": 0.05, "apl_eps1": 1.0, "apl_eps2": -2.5, "apl_eps1_neg": 0.0}
#: Values other than the defaults, one per field.
OTHER = {"gce_q": 0.3, "sce_alpha": 6.0, "sce_beta": 0.1, "sce_log_zero": -2.0, "bootstrap_kind": "hard",
         "bootstrap_beta": 0.5, "bootstrap_detach": False, "asl_gamma_pos": 1.0, "asl_gamma_neg": 2.0,
         "asl_margin": 0.1, "apl_eps1": 2.0, "apl_eps2": 0.5, "apl_eps1_neg": 1.0}
READS = {"gce": {"gce_q"}, "sce": {"sce_alpha", "sce_beta", "sce_log_zero"},
         "bootstrap": {"bootstrap_kind", "bootstrap_beta", "bootstrap_detach"},
         "asl": {"asl_gamma_pos", "asl_gamma_neg", "asl_margin"},
         "apl": {"asl_gamma_pos", "asl_gamma_neg", "asl_margin", "apl_eps1", "apl_eps2", "apl_eps1_neg"}}


def test_defaults_and_every_new_field_is_hash_omitted_at_its_default():
    config = LossConfig()
    assert {name: getattr(config, name) for name in ROBUST_DEFAULTS} == ROBUST_DEFAULTS
    assert {k: v for k, v in LossConfig.HASH_OMIT.items() if k in ROBUST_DEFAULTS} == ROBUST_DEFAULTS
    assert BOOTSTRAP_BETA == {"soft": 0.95, "hard": 0.8}


def test_bce_and_csu_run_ids_are_those_stored_before_the_robust_losses():
    # the ids of runs stored before these fields existed (computed on the tree before them)
    assert RunConfig(loss=LossConfig(name="bce")).run_id == "bce-small_cnn-s0-6161a52df2"
    # (CSU's default became the paper's form since: plain csu now has the gradient id, and the
    # stationary variant keeps the id the stationary default had)
    assert RunConfig(loss=LossConfig(name="csu", csu_fit="stationary")).run_id == "csu-small_cnn-s0-59cb256f0c"
    assert RunConfig(loss=LossConfig(name="csu")).run_id == "csu-small_cnn-s0-1224371698"
    assert RunConfig(loss=LossConfig(name="csu2", csu_fit="stationary")).run_id == "csu2-small_cnn-s0-4fe4cf3a46"
    assert run_config("smoke", loss="bce").run_id == "bce-small_cnn-s0-ec6b739bac"
    assert run_config("smoke", loss="csu_stationary").run_id == "csu-small_cnn-s0-9f99ac24b9"


@pytest.mark.parametrize("name", ["bce", "csu", "csu2", "gce", "sce", "bootstrap", "asl", "apl"])
def test_a_loss_id_ignores_the_fields_of_the_other_losses(name):
    base = RunConfig(loss=LossConfig(name=name))
    for field, other in OTHER.items():
        changed = RunConfig(loss=LossConfig(name=name, **{field: other}))
        same = changed.run_id == base.run_id
        assert same == (field not in READS.get(name, set())), (name, field)


def test_a_robust_loss_id_ignores_csu_options_but_bce_keeps_its_stored_ones():
    csu_options = {"csu_init": 1.0, "csu_lr": 0.01, "csu_scale": "half", "csu_class_reduction": "mean",
                   "csu_fit": "gradient"}
    for name in ("gce", "apl"):
        with_options = RunConfig(loss=LossConfig(name=name, **csu_options))
        assert with_options.run_id == RunConfig(loss=LossConfig(name=name)).run_id
    # BCE ids were stored with the csu_* fields (but never csu_fit) in their hash
    assert RunConfig(loss=LossConfig(name="bce", csu_init=1.0)).run_id != RunConfig(loss=LossConfig(name="bce")).run_id
    assert RunConfig(loss=LossConfig(name="bce", csu_fit="gradient")).run_id == RunConfig().run_id


def test_a_stored_config_without_the_new_fields_loads_with_the_defaults():
    stored = RunConfig(loss=LossConfig(name="csu", csu_fit="stationary")).to_dict()
    for name in ROBUST_DEFAULTS:
        del stored["loss"][name]
    loaded = RunConfig.from_stored(stored)
    assert loaded == RunConfig(loss=LossConfig(name="csu", csu_fit="stationary")) and loaded.run_id == "csu-small_cnn-s0-59cb256f0c"
    assert RunConfig.from_dict(RunConfig(loss=LossConfig(name="apl", **OTHER)).to_dict()).loss.apl_eps2 == 0.5


@pytest.mark.parametrize("field, bad, says", [
    ("gce_q", 0.0, "loss.gce_q must lie in (0, 1]"),
    ("gce_q", 1.5, "loss.gce_q must lie in (0, 1]"),
    ("gce_q", "0.7", "loss.gce_q must lie in (0, 1]"),
    ("sce_alpha", -0.1, "loss.sce_alpha must be a number >= 0"),
    ("sce_beta", float("inf"), "loss.sce_beta must be a number >= 0"),
    ("sce_log_zero", 0.0, "loss.sce_log_zero (the value log 0 is clipped to) must be negative"),
    ("bootstrap_kind", "medium", "loss.bootstrap_kind must be 'soft' or 'hard'"),
    ("bootstrap_beta", 1.2, "loss.bootstrap_beta must lie in [0, 1]"),
    ("bootstrap_detach", "yes", "loss.bootstrap_detach must be true or false"),
    ("asl_gamma_pos", -1.0, "loss.asl_gamma_pos must be a number >= 0"),
    ("asl_gamma_neg", float("nan"), "loss.asl_gamma_neg must be a number >= 0"),
    ("asl_margin", 1.0, "loss.asl_margin must lie in [0, 1)"),
    ("apl_eps2", float("nan"), "loss.apl_eps2 must be a finite number"),
])
def test_a_bad_value_raises_an_error_naming_the_field(field, bad, says):
    with pytest.raises(ConfigError) as err:
        LossConfig(name="bce", **{field: bad})
    assert says in str(err.value) and repr(bad) in str(err.value)


def test_sce_needs_one_of_its_two_terms():
    with pytest.raises(ConfigError, match="loss.sce_alpha and loss.sce_beta cannot both be 0"):
        LossConfig(name="sce", sce_alpha=0.0, sce_beta=0.0)
    LossConfig(name="sce", sce_alpha=0.0)  # the reverse term alone is a loss


def test_from_dict_names_the_field_of_a_bad_value():
    data = RunConfig().to_dict()
    data["loss"] = {"name": "gce", "gce_q": 2}
    with pytest.raises(ConfigError, match="loss.gce_q"):
        RunConfig.from_dict(data)
