"""The sigma analyses (csu_lib.analysis.sigma, .sigma_stats): Spearman rho against scipy and
precision@k counted by hand; a KDE's integral; medians of hand-made sigma logs in RunRecords built
directly (no training); the half-scale multiplier as the loss applies it.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from csu_lib.analysis import sigma as S
from csu_lib.analysis import sigma_stats as SS
from csu_lib.config import CorruptionConfig, LossConfig, ModelConfig, RunConfig, TrainConfig
from csu_lib.core import stats as ST
from csu_lib.corruption import CorruptionResult
from csu_lib.losses import CSULoss
from csu_lib.pipeline import load_trained
from csu_lib.records import RunRecord, write_corruption
from csu_lib.study import run_config
from csu_lib.training import train_run


# ---------------------------------------------------------------------------------------------
# Sigma vs truth

SIGMA = np.array([3.0, 2.5, 0.9, 2.8, 1.0, 1.1, 0.8, 1.2, 0.7, 1.05])
# classes 0, 2 and 9 are the corrupted ones; the three largest sigma are classes 0, 3, 1
RATE = np.array([0.5, 0.0, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.45])


def test_sigma_vs_truth_hand_built():
    res = SS.sigma_vs_truth(SIGMA, RATE, k=3, n_boot=2000, seed=0)
    ref = stats.spearmanr(SIGMA, RATE)
    assert res["rho"] == pytest.approx(ref.statistic, abs=1e-12)
    assert res["p_value"] == pytest.approx(ref.pvalue, abs=1e-12)
    assert res["precision_at_k"] == pytest.approx(1 / 3)  # only class 0 is in both top-3 sets
    assert res["ci_lo"] <= res["rho"] <= res["ci_hi"]
    assert res["ci_lo"] < res["ci_hi"]
    again = SS.sigma_vs_truth(SIGMA, RATE, k=3, n_boot=2000, seed=0)
    assert (again["ci_lo"], again["ci_hi"]) == (res["ci_lo"], res["ci_hi"])
    other = SS.sigma_vs_truth(SIGMA, RATE, k=3, n_boot=2000, seed=1)
    assert (other["ci_lo"], other["ci_hi"]) != (res["ci_lo"], res["ci_hi"])

    # make class 2 the third-largest sigma: 2 of the 3 corrupted are in the top 3
    sigma = SIGMA.copy()
    sigma[2] = 2.9
    res2 = SS.sigma_vs_truth(sigma, RATE, k=3, n_boot=0)
    assert res2["precision_at_k"] == pytest.approx(2 / 3)
    assert res2["rho"] == pytest.approx(stats.spearmanr(sigma, RATE).statistic)
    assert not res2["truth_tied_at_k"]
    assert math.isnan(res2["ci_lo"])  # no bootstrap asked
    assert SS.sigma_vs_truth(sigma, RATE, k=4, n_boot=0)["truth_tied_at_k"]
    # constant truth: no rho
    assert math.isnan(SS.sigma_vs_truth(SIGMA, np.zeros(10), n_boot=50)["rho"])


def test_rowwise_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, size=(20, 9)).astype(float)
    b = rng.normal(size=(20, 9))
    got = ST.rowwise_spearman(a, b)
    for i in range(20):
        if np.ptp(a[i]) == 0:
            assert np.isnan(got[i])
        else:
            assert got[i] == pytest.approx(stats.spearmanr(a[i], b[i]).statistic, abs=1e-12)


def test_sigma_kde_integrates_to_one():
    values = np.random.default_rng(0).lognormal(0.0, 0.3, size=50)
    grid, dens = SS.sigma_kde(values, np.linspace(-5, 10, 3001))
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-3)
    g2, d2 = SS.sigma_kde(values)  # default grid: +- 3 bandwidths
    assert len(g2) == 256 and np.trapezoid(d2, g2) == pytest.approx(1.0, abs=0.02)
    with pytest.warns(RuntimeWarning, match="narrow spike"):
        g3, d3 = SS.sigma_kde([1.5, 1.5, 1.5])
    assert np.trapezoid(d3, g3) == pytest.approx(1.0, abs=1e-3)
    assert g3[np.argmax(d3)] == pytest.approx(1.5, abs=1e-3)
    with pytest.raises(ValueError):
        SS.sigma_kde([np.nan])


# ---------------------------------------------------------------------------------------------
# Fake run records (no training)


def _record(path, *, kind="san", ratio=0.5, seed=0, loss="csu", final=None, steps=4,
            class_rate=None, profile="uniform", k_classes=2):
    """A RunRecord whose s goes linearly from 0 to log(final) (so sigma^2 ends at ``final``)."""
    path.mkdir(parents=True, exist_ok=True)
    config = RunConfig(corruption=CorruptionConfig(kind=kind, ratio=ratio, profile=profile, k_classes=k_classes),
                       model=ModelConfig(name="small_cnn"), loss=LossConfig(name=loss), train=TrainConfig(seed=seed))
    log_sigma2 = None
    if final is not None:
        s_final = np.log(np.asarray(final, dtype=np.float64))
        log_sigma2 = (np.linspace(0, 1, steps)[:, None] * s_final[None]).astype(np.float32)
    if class_rate is not None:
        c = len(class_rate)
        z = np.zeros((2, c), np.float32)
        write_corruption(path, CorruptionResult(config.corruption, z, z, np.zeros(2, bool), np.zeros(2, np.int8),
                                                -np.ones(2, int), -np.ones(2, int), np.asarray(class_rate, float),
                                                np.asarray(class_rate, float) / 2))
    return RunRecord(path=path, config=config, history=pd.DataFrame(), log_sigma2=log_sigma2, steps_per_epoch=2,
                     final_metrics={}, versions={}, complete=True)


@pytest.fixture()
def fake_runs(tmp_path):
    rate = [0.5, 0.0, 0.0, 0.5, 0.0]
    return [
        _record(tmp_path / "a", seed=0, final=[1, 4, 9, 16, 25], class_rate=rate),  # sigma 1..5
        _record(tmp_path / "b", seed=1, final=[4, 9, 16, 25, 36], class_rate=rate),  # sigma 2..6
        _record(tmp_path / "c", kind="none", ratio=0.0, final=[1, 1, 4, 4, 4]),  # clean: sigma 1,1,2,2,2
        _record(tmp_path / "d", loss="bce"),  # no sigma: skipped
    ]


def test_sigma_table(fake_runs):
    table = S.sigma_table(fake_runs, class_names=list("vwxyz"))
    assert len(table) == 15
    med = table.groupby("path")["sigma"].median()
    assert med[str(fake_runs[0].path)] == pytest.approx(3.0)
    assert med[str(fake_runs[1].path)] == pytest.approx(4.0)
    assert med[str(fake_runs[2].path)] == pytest.approx(2.0)
    np.testing.assert_allclose(table["multiplier"], 1 / table["sigma"] ** 2, rtol=1e-6)
    np.testing.assert_allclose(table["log_sigma2"], np.log(table["sigma"] ** 2), rtol=1e-5, atol=1e-6)
    a = table[table["path"] == str(fake_runs[0].path)]
    assert list(a["class_rate"]) == [0.5, 0, 0, 0.5, 0]
    assert list(a["label_noise_rate"]) == [0.25, 0, 0, 0.25, 0]
    assert list(a["corrupted"]) == [True, False, False, True, False]
    assert list(a["class_name"]) == list("vwxyz")
    assert set(a["condition"]) == {"san 50%"} and set(a["corruption.kind"]) == {"san"}
    clean = table[table["condition"] == "clean"]
    assert (clean["class_rate"] == 0).all() and not clean["corrupted"].any()
    for col in S.RUN_COLUMNS:
        assert col in table.columns


def _epoch_record(path, learned, star, *, seed=0, kind="san"):
    """A RunRecord of len(learned) epochs of 3 steps whose s is ``learned[e]`` during epoch e, and
    whose epoch s* is ``star`` (None: a record written before it was kept)."""
    rec = _record(path, seed=seed, kind=kind, final=[1, 1, 1])
    learned = np.asarray(learned, np.float64)
    log = np.repeat(learned, 3, axis=0).astype(np.float32)
    return RunRecord(**{**rec.__dict__, "log_sigma2": log, "steps_per_epoch": 3,
                        "history": pd.DataFrame({"epoch": np.arange(len(learned))}),
                        "epoch_optimum_log_sigma2": None if star is None else np.asarray(star, np.float64)})


def test_epoch_trajectories_of_the_learned_s_and_each_epochs_s_star(tmp_path):
    # run a: 2 epochs, run b: 4 epochs, run c: 2 epochs without a recorded s*
    a = _epoch_record(tmp_path / "a", [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], [[-1.0, 0.0, 1.0], [-2.0, -1.0, 0.0]])
    b = _epoch_record(tmp_path / "b", [[0.0] * 3, [0.5] * 3, [1.0] * 3, [1.5] * 3], [[-3.0] * 3] * 4, seed=1)
    c = _epoch_record(tmp_path / "c", [[0.0] * 3, [2.0] * 3], None, seed=2)
    np.testing.assert_array_equal(a.epoch_log_sigma2, [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    progress, learned, star = S.epoch_multipliers(a)
    np.testing.assert_allclose(progress, [0.5, 1.0])
    np.testing.assert_allclose(learned, np.exp(-a.epoch_log_sigma2))
    np.testing.assert_allclose(star, np.exp(-a.epoch_optimum_log_sigma2))
    assert S.epoch_multipliers(c)[2] is None

    agg = S.aggregate_epoch_trajectories([a, b, c], n_points=5)  # progress 0, .25, .5, .75, 1
    assert list(agg["n_runs"].unique()) == [3] and list(agg["n_runs_optimum"].unique()) == [2]
    assert agg["mean"].iloc[0] == pytest.approx(1.0)  # every run starts at s = csu_init = 0
    # at the end: geometric mean over runs of the class-wise median multiplier of the last epoch's s
    assert agg["mean"].iloc[-1] == pytest.approx(np.exp(np.mean([-2.0, -1.5, -2.0])), rel=1e-6)
    # the s* companion: NaN until every run with one has finished its first epoch (a: at 0.5)
    assert agg["optimum"].iloc[:2].isna().all() and agg["optimum"].iloc[2:].notna().all()
    assert agg["optimum"].iloc[-1] == pytest.approx(np.exp(np.mean([1.0, 3.0])), rel=1e-6)
    assert agg["optimum"].iloc[2] == pytest.approx(np.exp(np.mean([0.0, 3.0])), rel=1e-6)  # a's epoch 1, b's epoch 2
    logs = np.array([1.0, 3.0])
    half = 12.706204736174698 * logs.std(ddof=1) / np.sqrt(2)
    assert agg["optimum_hi"].iloc[-1] == pytest.approx(np.exp(logs.mean() + half), rel=1e-5)

    groups = S.grouped_trajectories([a, b, c], per="epoch", n_points=5)
    assert list(groups) == ["san 50% small_cnn csu"] and "optimum" in groups["san 50% small_cnn csu"]
    stationary = RunRecord(**{**a.__dict__, "config": a.config.replace(loss=LossConfig(name="csu", csu_fit="stationary"))})
    by_label = S.grouped_trajectories([a, stationary], by=("corruption.kind", "loss.label"), per="epoch", n_points=5)
    assert list(by_label) == ["san CSU", "san CSU (stationary)"]
    with pytest.raises(ValueError, match="per"):
        S.grouped_trajectories([a], per="batch")


def test_grouped_and_class_trajectories(fake_runs):
    groups = S.grouped_trajectories(fake_runs, n_points=5)
    assert sorted(groups) == ["clean small_cnn csu", "san 50% small_cnn csu"]
    san = groups["san 50% small_cnn csu"]
    assert int(san["n_runs"].iloc[0]) == 2
    # at the end: geometric mean over the two runs of the class-wise median 1/sigma^2
    assert san["mean"].iloc[-1] == pytest.approx(np.sqrt(1 / 9 * 1 / 16), rel=1e-5)
    # the band: exp of the Student-t interval of the two logs (independent computation)
    logs = np.log([1 / 9, 1 / 16])
    half = 12.706204736174698 * logs.std(ddof=1) / np.sqrt(2)
    assert san["lo"].iloc[-1] == pytest.approx(np.exp(logs.mean() - half), rel=1e-5)
    assert san["hi"].iloc[-1] == pytest.approx(np.exp(logs.mean() + half), rel=1e-5)
    assert san["mean"].iloc[0] == pytest.approx(1.0)  # s = 0 at the first logged step
    assert san["lo"].iloc[-1] < san["mean"].iloc[-1] < san["hi"].iloc[-1]
    assert set(san["corruption.kind"]) == {"san"}
    clean = groups["clean small_cnn csu"]
    assert clean["mean"].iloc[-1] == pytest.approx(1 / 4, rel=1e-5)
    assert int(clean["n_runs"].iloc[0]) == 1

    grid, traj = S.class_trajectories(fake_runs[0], 5)
    assert traj.shape == (5, 5)
    np.testing.assert_allclose(traj[-1], 1 / np.array([1, 4, 9, 16, 25]), rtol=1e-5)
    _, sig = S.class_trajectories(fake_runs[0], np.array([1.0]), quantity="sigma")
    np.testing.assert_allclose(sig[0], [1, 2, 3, 4, 5], rtol=1e-5)


def test_sigma_densities(fake_runs):
    table = S.sigma_table(fake_runs)
    dens = SS.sigma_densities(table, split_corrupted=True)
    # the clean run has no corrupted class, so only its "(clean)" part exists
    assert list(dens) == ["san 50% small_cnn csu (corrupted)", "san 50% small_cnn csu (clean)",
                          "clean small_cnn csu (clean)"]
    assert int(dens["san 50% small_cnn csu (corrupted)"]["n"].iloc[0]) == 4  # 2 classes x 2 runs
    assert int(dens["san 50% small_cnn csu (clean)"]["n"].iloc[0]) == 6
    grids = [d["x"].to_numpy() for d in dens.values()]
    assert all(np.array_equal(grids[0], g) for g in grids)  # one shared grid
    pooled = SS.sigma_densities(table, by=("loss.name",), value="log_sigma2")
    assert list(pooled) == ["csu"] and int(pooled["csu"]["n"].iloc[0]) == 15


def test_sigma_vs_truth_table(tmp_path):
    rate = [0.6, 0.0, 0.0, 0.4, 0.0, 0.0]
    runs = [_record(tmp_path / f"r{i}", seed=i, final=f, class_rate=rate, profile="concentrated", k_classes=2)
            for i, f in enumerate([[9, 1, 2, 4, 1.5, 1.2], [8, 1, 5, 3, 1.1, 1.3]])]
    per_run = SS.sigma_vs_truth_table(runs, n_boot=200)
    assert len(per_run) == 2 and list(per_run["k"]) == [2, 2]
    assert list(per_run["precision_at_k"]) == [1.0, 0.5]
    for (_, row), f in zip(per_run.iterrows(), [[9, 1, 2, 4, 1.5, 1.2], [8, 1, 5, 3, 1.1, 1.3]]):
        assert row["rho"] == pytest.approx(stats.spearmanr(np.sqrt(f), rate).statistic)
    setting = SS.sigma_vs_truth_table(runs, n_boot=200, per="setting")
    assert len(setting) == 1
    assert setting["rho"].iloc[0] == pytest.approx(per_run["rho"].mean())
    assert setting["precision_at_k"].iloc[0] == pytest.approx(0.75)
    assert int(setting["n_runs"].iloc[0]) == 2
    assert SS.sigma_vs_truth_table(runs, k=None)["precision_at_k"].isna().all()


# ---------------------------------------------------------------------------------------------
# Figures

def test_half_scale_multiplier_is_the_losses_own(tmp_path):
    """With csu_scale="half" the multiplier is 1/(2 sigma^2) everywhere it is read -- the record,
    the trajectories and the sigma table -- as the loss applies it (independent formula here)."""
    rec = _record(tmp_path / "half", final=[1, 4, 9])
    rec = RunRecord(**{**rec.__dict__, "config": rec.config.replace(loss=LossConfig(name="csu", csu_scale="half"))})
    s_final = np.log([1.0, 4.0, 9.0])
    np.testing.assert_allclose(rec.multiplier[-1], 0.5 * np.exp(-s_final), rtol=1e-6)
    _, traj = S.class_trajectories(rec, np.array([1.0]))
    np.testing.assert_allclose(traj[0], [0.5, 0.125, 0.5 / 9], rtol=1e-6)
    table = S.sigma_table([rec])
    np.testing.assert_allclose(table["multiplier"], 0.5 / table["sigma"] ** 2, rtol=1e-6)
    loss = CSULoss(3, scale="half")
    loss.load_log_sigma2_(rec.log_sigma2[-1])
    np.testing.assert_allclose(loss.multiplier().numpy(), rec.multiplier[-1], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# the half-scale multiplier in the trajectory figure's numbers, from a real run


def test_half_scale_multiplier_trajectory_end_to_end(tmp_path, smoke_data):
    config = run_config("smoke", loss="csu", loss_options={"csu_scale": "half"}, epochs=1, device="cpu")
    assert config.loss.csu_scale == "half"
    rec = train_run(config, tmp_path / "half", data=smoke_data, progress=False)
    assert rec.learns_sigma
    _, loss = load_trained(rec)
    assert loss.scale == 0.5
    s = rec.log_sigma2.astype(np.float64)
    # the loss's own multiplier at the last logged s is half exp(-s) ...
    loss.load_log_sigma2_(s[-1])
    own = loss.multiplier().double().numpy()
    np.testing.assert_allclose(own, 0.5 * np.exp(-s[-1]), rtol=1e-6)
    # ... and is what the trajectory functions (and so the figure) report
    progress, mult = S.multiplier_trajectory(rec)
    assert progress[-1] == 1.0
    np.testing.assert_allclose(mult, 0.5 * np.exp(-s), rtol=1e-6)
    np.testing.assert_allclose(mult[-1], own, rtol=1e-5)
    agg = S.aggregate_trajectories([rec], n_points=11)
    assert agg["progress"].iloc[-1] == 1.0
    assert agg["mean"].iloc[-1] == pytest.approx(float(np.median(own)), rel=1e-5), \
        "the trajectory figure's final multiplier is not the loss's own (0.5 * exp(-s))"
    table = S.sigma_table([rec])
    np.testing.assert_allclose(table["multiplier"].to_numpy(), own, rtol=1e-5)
