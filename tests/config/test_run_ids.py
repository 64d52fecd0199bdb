"""Run ids are the hash of a run's configuration: a change to a config dataclass (a field, a
default, the serialisation) would silently orphan every stored run. ``data/run_ids.json`` pins
the ids of every profile as they are now. Three earlier changes moved ids on purpose, and each
snapshot before them is kept to show that nothing else moved:

- ``data/run_ids_before_profile_change.json``: before the quick profile changed (backbone,
  epochs, early stopping, batch size, seeds), the corruption draw of a corrupted run began to
  follow the training seed (seed 3's ids changed, seed 0's did not), and ``run_config``'s default
  backbone became the profile's first (a paper run without ``model`` is MobileNetV2);
- ``data/run_ids_before_stationary_default.json``: before CSU learned s by its stationary fit by
  default (``loss.csu_fit``): every CSU id moved and nothing else; a CSU run with
  ``csu_fit="gradient"`` keeps the id it had, and so does every config under the fields added
  since (``HASH_OMIT``);
- ``data/run_ids_before_lr_decays.json``: before the quick profile decayed its learning rate on a
  plateau (``train.lr_decays``, epoch cap 100): every quick id moved and nothing else;
- ``data/run_ids_before_budget_schedule.json``: before the quick profile trained a budget of 24
  cosine epochs with BatchNorm recalibration (``train.bn_recalibration``) instead of the plateau
  decays: every quick id moved and nothing else;
- ``data/run_ids_before_gradient_default.json``: after the budget schedule, before "CSU" meant
  the paper's form again (s learned by gradient, ``loss.csu_fit="gradient"`` the default): every CSU id moved and nothing
  else, back to the id a gradient run had (``HASH_OMIT`` leaves ``csu_fit="gradient"`` out of the
  hash); a stationary run (``csu_stationary``) keeps the id the stationary default gave it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from csu_lib.config import MethodConfig
from csu_lib.study import grid, run_config

PINNED = json.loads((Path(__file__).resolve().parents[1] / "data" / "run_ids.json").read_text())
BEFORE_PROFILE_CHANGE = json.loads((Path(__file__).resolve().parents[1] / "data" / "run_ids_before_profile_change.json").read_text())
BEFORE_STATIONARY_DEFAULT = json.loads((Path(__file__).resolve().parents[1] / "data" / "run_ids_before_stationary_default.json").read_text())
BEFORE_BUDGET = json.loads((Path(__file__).resolve().parents[1] / "data" / "run_ids_before_budget_schedule.json").read_text())
BEFORE_LR_DECAYS = json.loads((Path(__file__).resolve().parents[1] / "data" / "run_ids_before_lr_decays.json").read_text())
BEFORE_GRADIENT_DEFAULT = json.loads((Path(__file__).resolve().parents[1] / "data" / "run_ids_before_gradient_default.json").read_text())


def _computed(csu: str = "csu") -> dict[str, str]:
    """The pinned ids; ``csu``: how the CSU runs are spelled (``csu_stationary``: the stationary fit)."""
    out = {}
    for profile in ("smoke", "quick", "paper"):
        for loss in ("bce", "csu"):
            for cond in ("none", "san:0.5", "man:0.25", "sln:0.5", "missing:0.1"):
                for c in grid(profile, conditions=[cond], losses=[csu if loss == "csu" else loss],
                              models=["small_cnn", "cnn14", "mobilenetv2"], seeds=[0, 3]):
                    out[f"{profile}|{loss}|{cond}|{c.model.name}|{c.train.seed}"] = c.run_id
        c = run_config(profile, loss=csu, corruption={"kind": "man", "ratio": 0.15, "profile": "concentrated",
                                                      "k_classes": 10})
        out[f"{profile}|csu|man:0.15 concentrated"] = c.run_id
        c = run_config(profile, loss="bce", corruption={"kind": "san", "ratio": 0.5}).replace(
            method=MethodConfig(name="teacher_mask", mask_percent=10.0))
        out[f"{profile}|bce+teacher_mask10|san:0.5"] = c.run_id
        out[f"{profile}|csu|panns32k"] = run_config(profile, loss=csu, frontend="panns32k").run_id
    return out


def test_run_ids_of_every_profile_are_unchanged():
    computed = _computed()
    assert len(PINNED) == 189 and set(computed) == set(PINNED)
    changed = {k: (PINNED[k], computed[k]) for k in PINNED if computed[k] != PINNED[k]}
    assert changed == {}


def test_the_profile_change_moved_only_the_intended_ids():
    changed = {k for k in BEFORE_PROFILE_CHANGE if BEFORE_PROFILE_CHANGE[k] != BEFORE_STATIONARY_DEFAULT[k]}
    default_model = {"paper|bce+teacher_mask10|san:0.5", "paper|csu|man:0.15 concentrated", "paper|csu|panns32k"}
    for key in changed - default_model:
        parts = key.split("|")
        assert parts[0] == "quick" or (len(parts) == 5 and parts[2] != "none" and parts[4] != "0"), key
    assert not any(k.startswith(("smoke|", "paper|")) and k.endswith("|0") for k in changed)
    assert default_model <= changed


@pytest.mark.parametrize("key", ["quick|csu|san:0.5|small_cnn|0", "paper|bce|none|cnn14|3"])
def test_pinned_ids_name_the_run(key):
    loss, model, seed = key.split("|")[1], key.split("|")[3], key.split("|")[4]
    assert PINNED[key].startswith(f"{loss}-{model}-s{seed}-")


def test_lr_decays_moved_exactly_the_quick_ids():
    changed = {k for k in BEFORE_BUDGET if BEFORE_BUDGET[k] != BEFORE_LR_DECAYS[k]}
    assert changed == {k for k in BEFORE_BUDGET if k.startswith("quick|")} and len(changed) == 63


def test_the_budget_schedule_moved_exactly_the_quick_ids_before_the_gradient_default():
    changed = {k for k in BEFORE_GRADIENT_DEFAULT if BEFORE_GRADIENT_DEFAULT[k] != BEFORE_BUDGET[k]}
    assert changed == {k for k in BEFORE_GRADIENT_DEFAULT if k.startswith("quick|")} and len(changed) == 63


def test_the_gradient_default_moved_only_the_csu_ids_and_stationary_keeps_them():
    csu = {k for k in PINNED if k.split("|")[1] == "csu"}
    changed = {k for k in PINNED if PINNED[k] != BEFORE_GRADIENT_DEFAULT[k]}
    assert changed == csu and len(changed) == 96
    # the stationary variant hashes with csu_fit="stationary": the ids the stationary default gave
    stationary = _computed("csu_stationary")
    assert stationary == BEFORE_GRADIENT_DEFAULT
    # CSU (the paper's form) hashes without csu_fit: the id a gradient run had before the stationary
    # default (smoke and paper; the quick ids moved with train.lr_decays since)
    for key in csu - {k for k in csu if k.startswith("quick|")}:
        assert PINNED[key] == BEFORE_STATIONARY_DEFAULT[key], key
    default = run_config("smoke", loss="csu")
    assert default.loss.csu_fit == "gradient" and "csu_fit" in default.loss.hash_omitted()
    explicit = run_config("smoke", loss="csu", loss_options={"csu_fit": "stationary"})
    assert explicit == run_config("smoke", loss="csu_stationary") and "csu_fit" not in explicit.loss.hash_omitted()


def test_the_stationary_default_moved_only_the_csu_ids_and_gradient_keeps_them():
    changed = {k for k in BEFORE_STATIONARY_DEFAULT if BEFORE_STATIONARY_DEFAULT[k] != BEFORE_LR_DECAYS[k]}
    assert changed == {k for k in BEFORE_STATIONARY_DEFAULT if k.split("|")[1] == "csu"} and len(changed) == 96
    from csu_lib.study import run_config

    for key in sorted(changed)[:12]:
        profile, _, cond = key.split("|")[:3]
        parts = key.split("|")
        if len(parts) != 5:
            continue
        corruption = None if cond == "none" else {"kind": cond.split(":")[0], "ratio": float(cond.split(":")[1])}
        cfg = run_config(profile, loss="csu", model=parts[3], seed=int(parts[4]), corruption=corruption,
                         loss_options={"csu_fit": "gradient"})
        assert cfg.run_id == BEFORE_STATIONARY_DEFAULT[key], key
