"""Many runs trained at once (csu_lib.training.groups, .stacked): same training as sequential runs, own records,
resume, grouping rules and the sweep option."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from csu_lib.config import CorruptionConfig
from csu_lib.core.errors import ConfigError
from csu_lib.records import is_complete, load_checkpoint
from csu_lib.study import run_all, run_dir_for, run_sweep
from csu_lib.pipeline import prepare_data
from csu_lib.training import StackedRuns, check_group, group_seed, plan_groups, train_group, train_run
from csu_lib.training import methods as METHODS


class Crash(RuntimeError):
    pass


def _crash_at(epoch: int, step: int):
    def hook(e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            raise Crash(f"simulated crash at epoch {e} step {s}")
    return hook


def _no_dropout(config, seed: int, corruption: dict | None = None, fit: str = "stationary"):
    return config.replace(model=config.model.replace(dropout=0.0), train=config.train.replace(seed=seed, epochs=2),
                          corruption=CorruptionConfig(**(corruption or {})), loss=config.loss.replace(csu_fit=fit))


@pytest.fixture(scope="module")
def pair(smoke_config):
    """Two runs that may share a group: another seed and a corruption (same audio and features),
    with the stationary fit of s (the paper's form, s learned by gradient: the test below it)."""
    return [_no_dropout(smoke_config, 0), _no_dropout(smoke_config, 1, {"kind": "san", "ratio": 0.5})]


@pytest.fixture(scope="module")
def pair_data(pair):
    return [prepare_data(c, progress=False) for c in pair]


@pytest.fixture(scope="module")
def group_records(pair, pair_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("group")
    return train_group(pair, [root / c.run_id for c in pair], data=pair_data, progress=False)


def test_group_follows_sequential_runs_without_dropout(pair, pair_data, group_records, tmp_path):
    # Same initial weights, batch orders, labels and optimiser: without dropout the only difference
    # is float round-off of the batched convolutions, so sigma trajectories agree closely.
    for config, data, grouped in zip(pair, pair_data, group_records):
        alone = train_run(config, tmp_path / config.run_id, data=data, progress=False)
        assert grouped.config == alone.config and grouped.config.run_id == alone.config.run_id
        assert grouped.log_sigma2.shape == alone.log_sigma2.shape == (2 * alone.steps_per_epoch, 50)
        # (the stationary fit sets s to the log of a mean BCE over float32 scores: round-off of the
        # batched convolutions reaches it relatively, hence rtol; s during epoch 2 is the fit of
        # the epoch-1 networks. The log's last row is the fit of the epoch-2 networks, which have
        # drifted apart by two epochs of round-off: the log of a well-fitted class's tiny mean
        # loss amplifies that drift, so that row is compared at 5%.)
        steps = alone.steps_per_epoch
        np.testing.assert_allclose(grouped.log_sigma2[:-1], alone.log_sigma2[:-1], rtol=1e-3, atol=2e-4)
        assert np.abs(grouped.log_sigma2[:-1] - alone.log_sigma2[:-1]).max() < 0.01 * np.abs(alone.log_sigma2).max()
        np.testing.assert_allclose(grouped.log_sigma2[-1], alone.log_sigma2[-1], rtol=5e-2)
        assert np.all(grouped.log_sigma2[steps - 1] == grouped.log_sigma2[steps])  # epoch 2 trains at epoch 1's fit
        g, a = grouped.history["train_loss"].to_numpy(), alone.history["train_loss"].to_numpy()
        np.testing.assert_allclose(g, a, rtol=1e-3)
        # each epoch's s* of its own training steps, accumulated per run from the stacked forward
        assert grouped.epoch_optimum_log_sigma2.shape == (2, 50)
        np.testing.assert_allclose(grouped.epoch_optimum_log_sigma2, alone.epoch_optimum_log_sigma2, rtol=1e-3,
                                   atol=1e-2)
        # the corrupted run was trained on its own corrupted labels
        assert grouped.summary["n_corrupted"] == alone.summary["n_corrupted"]
    assert group_records[1].summary["n_corrupted"] > 0 == group_records[0].summary["n_corrupted"]


def test_group_records_are_complete_and_say_so(pair, group_records):
    ids = [c.run_id for c in pair]
    for rec in group_records:
        assert rec.complete and is_complete(rec.path)
        assert rec.summary["vectorised"] == {"size": 2, "group": ids}
        assert rec.versions["vectorised"]["group"] == ids
        for split in ("train", "val", "test"):
            assert (rec.path / f"scores_{split}.npy").is_file()
        ckpt = load_checkpoint(rec.path)
        # the checkpoint is train_run's format: a one-run optimiser state over the run's parameters
        model_params = sum(1 for k in ckpt["model"] if not k.endswith(("running_mean", "running_var",
                                                                         "num_batches_tracked")))
        # + the CSU s when the optimiser learns it (not under the default stationary fit)
        assert len(ckpt["optimizer"]["state"]) == model_params + (rec.config.loss.csu_fit == "gradient")
        assert ckpt["optimizer"]["state"][0]["exp_avg"].shape == ckpt["model"]["bn0.weight"].shape


def test_group_resumes_bit_identical_after_crash(pair, pair_data, group_records, tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(Crash):
        train_group(pair, dirs, data=pair_data, progress=False, on_step=_crash_at(1, 2))
    assert [load_checkpoint(d)["epoch"] for d in dirs] == [0, 0]
    assert not any(is_complete(d) for d in dirs)
    resumed = train_group(pair, dirs, data=pair_data, progress=False)
    for r, ref in zip(resumed, group_records):
        np.testing.assert_array_equal(r.log_sigma2, ref.log_sigma2)
        np.testing.assert_array_equal(r.epoch_optimum_log_sigma2, ref.epoch_optimum_log_sigma2)
        assert r.final_metrics == ref.final_metrics
        assert r.history.drop(columns="seconds").equals(ref.history.drop(columns="seconds"))


def test_out_of_step_checkpoints_resume_one_by_one(pair, pair_data, tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(Crash):
        train_group(pair, dirs, data=pair_data, progress=False, on_step=_crash_at(1, 0))
    (dirs[1] / "checkpoint.pt").unlink()  # as if the crash came between the two runs' checkpoint writes
    records = train_group(pair, dirs, data=pair_data, progress=False)
    assert all(r.complete for r in records)
    assert "vectorised" not in records[1].summary  # retrained alone from scratch by train_run
    # resumed alone from epoch 1; its record keeps its group and says from when it trained alone
    assert records[0].summary["vectorised"] == {"size": 2, "group": [c.run_id for c in pair], "alone_from_epoch": 1}


def test_dropout_draws_differ_between_runs_of_a_group(smoke_config):
    # Two runs with identical weights and batches: under vmap(randomness="different") their dropout
    # masks differ, so their losses differ; with dropout 0 they are equal.
    from csu_lib.losses import build_loss
    from csu_lib.models import build_model

    losses = {}
    for p in (0.0, 0.5):
        cfg = smoke_config.model.replace(dropout=p)
        torch.manual_seed(0)
        model = build_model(cfg, 50, 64)
        models = [model, model]
        stack = StackedRuns(models, [build_loss(smoke_config.loss, 50)] * 2, smoke_config.train)
        x = torch.randn(1, 8, 64, 101).expand(2, -1, -1, -1)
        y = (torch.rand(1, 8, 50) < 0.1).float().expand(2, -1, -1)
        losses[p] = stack.step(x, y, None)
    assert losses[0.0][0] == losses[0.0][1]
    assert losses[0.5][0] != losses[0.5][1]


def test_bce_group_has_no_sigma(smoke_config, smoke_data, tmp_path):
    configs = [smoke_config.replace(loss=smoke_config.loss.replace(name="bce"),
                                    train=smoke_config.train.replace(epochs=1, seed=s)) for s in (0, 1)]
    records = train_group(configs, [tmp_path / "0", tmp_path / "1"], data=[smoke_data, smoke_data], progress=False)
    assert all(r.log_sigma2 is None and r.summary["vectorised"]["size"] == 2 for r in records)
    assert all(r.epoch_optimum_log_sigma2 is None for r in records)


def test_gradient_group_follows_sequential_runs(smoke_config, tmp_path):
    """CSU as the paper has it (s learned by the optimiser) in a group: the same s log and the same
    s* of each epoch's steps as the runs trained one by one (no dropout: float round-off only)."""
    pair = [_no_dropout(smoke_config, s, fit="gradient") for s in (0, 1)]
    pair = [c.replace(train=c.train.replace(epochs=1)) for c in pair]
    data = prepare_data(pair[0], progress=False)
    grouped = train_group(pair, [tmp_path / "g0", tmp_path / "g1"], data=[data, data], progress=False)
    for config, rec in zip(pair, grouped):
        alone = train_run(config, tmp_path / config.run_id, data=data, progress=False)
        assert rec.config.loss.csu_fit == "gradient" and rec.summary["vectorised"]["size"] == 2
        # (Adam's step on a near-zero gradient of s amplifies the round-off: a few 1e-6 of a 3e-3 step)
        np.testing.assert_allclose(rec.log_sigma2, alone.log_sigma2, rtol=1e-3, atol=5e-5)
        np.testing.assert_allclose(rec.epoch_optimum_log_sigma2, alone.epoch_optimum_log_sigma2, rtol=1e-3,
                                   atol=1e-2)


def test_teacher_mask_group_uses_each_runs_mask(smoke_config, tmp_path):
    # a method that only sets targets and a loss mask can be grouped; each run gets its own
    # teacher and mask, the same as when it is trained alone
    cfgs = [smoke_config.replace(method=smoke_config.method.replace(name="teacher_mask", mask_percent=10),
                                 corruption=CorruptionConfig(kind="missing", ratio=0.5, seed=s),
                                 train=smoke_config.train.replace(epochs=1, seed=s)) for s in (0, 1)]
    cache = tmp_path / "cache"
    records = train_group(cfgs, [tmp_path / "0", tmp_path / "1"], cache_dir=cache, progress=False)
    summaries = [r.summary["method"] for r in records]
    assert all(m["masked"] > 0 and m["masked_changed"] > 0 for m in summaries), summaries
    assert summaries[0]["masked_changed"] != summaries[1]["masked_changed"]
    alone = train_run(cfgs[1], tmp_path / "alone", cache_dir=cache, progress=False)
    assert alone.summary["method"] == summaries[1]


def test_check_group_names_what_differs(smoke_config):
    other_model = smoke_config.replace(model=smoke_config.model.replace(name="cnn6"))
    with pytest.raises(ConfigError, match=r"model\.name \('small_cnn' vs 'cnn6'\)"):
        check_group([smoke_config, other_model])
    other_lr = smoke_config.replace(train=smoke_config.train.replace(lr=0.1, seed=4))
    with pytest.raises(ConfigError, match=r"train\.lr"):
        check_group([smoke_config, other_lr])
    with pytest.raises(ConfigError, match="transforms batches"):
        check_group([smoke_config.replace(method=smoke_config.method.replace(name="mixup_or"))])
    with pytest.raises(ConfigError, match="same run twice"):
        check_group([smoke_config, smoke_config])
    with pytest.raises(ConfigError, match="2 configs but 1 run folders"):
        train_group([smoke_config, smoke_config.replace(train=smoke_config.train.replace(seed=3))], ["x"])
    # seeds and corruption settings may differ
    check_group([smoke_config, smoke_config.replace(train=smoke_config.train.replace(seed=9),
                                                    corruption=CorruptionConfig(kind="man", ratio=0.25, seed=3))])


def test_plan_groups_keeps_order_and_size(smoke_config):
    def seed(c, s):
        return c.replace(train=c.train.replace(seed=s))
    cnn6 = smoke_config.replace(model=smoke_config.model.replace(name="cnn6"))
    mix = smoke_config.replace(method=smoke_config.method.replace(name="mixup_or"))
    configs = [seed(smoke_config, 0), seed(cnn6, 0), seed(smoke_config, 1), seed(mix, 0), seed(smoke_config, 2),
               seed(cnn6, 1)]
    groups = plan_groups(configs, 2)
    assert [[configs.index(c) for c in g] for g in groups] == [[0, 2], [1, 5], [3], [4]]
    assert [[configs.index(c) for c in g] for g in plan_groups(configs, 1)] == [[i] for i in range(6)]
    with pytest.raises(ConfigError, match="positive integer"):
        plan_groups(configs, 0)


def test_batch_methods_are_exactly_those_that_transform_batches():
    classes = {name: cls for name, cls in vars(METHODS).items() if inspect.isclass(cls)
               and issubclass(cls, METHODS.Method)}
    classes.update(METHODS.METHODS)  # every registered method, the oracles of their own module included
    assert {"class_oracle", "sample_oracle"} <= set(classes)
    overriding = {cls for cls in classes.values() if cls.transform_batch is not METHODS.Method.transform_batch}
    assert {METHODS.PseudoStrongLabels, METHODS.OrMixup, METHODS.Mixup} == overriding
    assert METHODS.BATCH_METHODS == {"psl", "mixup_or", "mixup"}


def test_group_seed_depends_on_the_runs():
    assert group_seed(["a", "b"]) == group_seed(["a", "b"]) != group_seed(["b", "a"])
    assert 0 <= group_seed(["a"]) < 2**63


def test_sweep_vectorise_option(pair, tmp_path, capsys):
    configs = [c.replace(train=c.train.replace(epochs=1)) for c in pair]
    result = run_sweep(configs, tmp_path, vectorise=4, progress=True)
    assert result.trained == [c.run_id for c in configs]
    assert all(r.summary["vectorised"]["size"] == 2 for r in result.records)
    assert "(2 vectorised)" in capsys.readouterr().out
    again = run_all(configs, tmp_path, vectorise=4, progress=False)  # complete: nothing trained
    assert [r.path for r in again] == [run_dir_for(c, tmp_path) for c in configs]
    with pytest.raises(ConfigError, match="--vectorise must be a positive integer"):
        run_sweep(configs, tmp_path, vectorise=0)
    with pytest.raises(ConfigError, match="only with the local engine"):
        run_sweep(configs, tmp_path, engine="ray", vectorise=2)


def test_vectorised_group_refused_under_torchrun(smoke_config, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process"):
        train_group([smoke_config, smoke_config.replace(train=smoke_config.train.replace(seed=5))],
                    [tmp_path / "a", tmp_path / "b"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_group_on_cuda_with_bf16(pair, tmp_path):
    configs = [c.replace(train=c.train.replace(device="cuda", epochs=1)) for c in pair]
    records = train_group(configs, [tmp_path / c.run_id for c in configs], progress=False)
    for r in records:
        assert r.complete and r.summary["vectorised"]["size"] == 2
        assert np.isfinite(r.log_sigma2).all() and 0 <= r.final_metrics["test"]["mAP"] <= 1
