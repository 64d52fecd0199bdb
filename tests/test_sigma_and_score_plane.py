"""Tests of the sigma analyses (csu_lib.analysis.sigma, .sigma_stats), the score plane
(csu_lib.analysis.score_plane) and their figures in csu_lib.plots.

Known answers: the score plane against the loss modules applied to the same two logits (and
against the closed form); Spearman rho against scipy and precision@k counted by hand; a KDE's
integral; medians of hand-made sigma logs in RunRecords built directly (no training).
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from csu_lib import plots
from csu_lib.analysis import figure_stats as FS
from csu_lib.analysis import score_plane as SP
from csu_lib.analysis import sigma as S
from csu_lib.analysis import sigma_stats as SS
from csu_lib.config import CorruptionConfig, LossConfig, ModelConfig, RunConfig, TrainConfig
from csu_lib.core import stats as ST
from csu_lib.corruption import CorruptionResult
from csu_lib.losses import BCELoss, CSULoss
from csu_lib.records import RunRecord, write_corruption
from csu_lib.report import figure_files

# ---------------------------------------------------------------------------------------------
# Score plane


@pytest.mark.parametrize("targets", [(1.0, 0.0), (0.0, 1.0), (0.7, 1.0)])
@pytest.mark.parametrize("name", ["bce", "csu", "csu-half", "csu-mean"])
def test_score_plane_equals_the_loss_applied_directly(name, targets):
    s_pair = (0.8, -1.3)
    grid_a, grid_b = np.linspace(-6, 6, 13), np.linspace(-4, 5, 10)  # A != B: orientation matters
    if name == "bce":
        loss_arg, module = "bce", BCELoss()
    else:
        scale = "half" if name == "csu-half" else "full"
        red = "mean" if name == "csu-mean" else "sum"
        loss_arg = LossConfig(name="csu", csu_scale=scale, csu_class_reduction=red)
        module = CSULoss(2, scale=scale, class_reduction=red)
        with torch.no_grad():
            module.s.copy_(torch.tensor(s_pair))
    surface = SP.score_plane(loss_arg, s_pair, targets, grid_a, grid_b)
    assert surface.shape == (13, 10)
    assert np.ptp(surface) > 0.1
    y = torch.tensor([targets], dtype=torch.float32)
    for i, j in [(0, 0), (3, 7), (12, 9), (6, 2)]:
        z = torch.tensor([[grid_a[i], grid_b[j]]], dtype=torch.float32)
        assert surface[i, j] == pytest.approx(float(module(z, y).detach()), rel=1e-6, abs=1e-6)
    # closed form of the adopted CSU (docs/methods.md, section 1), independent of the library
    if name == "csu":
        za, zb = grid_a[3], grid_b[7]

        def bce(z, t):
            return max(z, 0) - z * t + math.log1p(math.exp(-abs(z)))

        expected = sum(math.exp(-s) * bce(z, t) + s / 2 for z, t, s in zip((za, zb), targets, s_pair))
        assert surface[3, 7] == pytest.approx(expected, rel=1e-6, abs=1e-6)  # BCE is float32


def test_score_plane_is_the_pair_part_of_the_full_loss():
    """In a 5-class CSU loss with the other logits fixed, moving (z_a, z_b) changes the full
    per-sample loss exactly as the plane says (the other classes' terms cancel)."""
    s = torch.tensor([0.3, -0.7, 1.1, 0.0, -0.2])
    full = CSULoss(5)
    with torch.no_grad():
        full.s.copy_(s)
    a, b = 1, 3
    y = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0]])
    grid = np.linspace(-3, 3, 7)
    surface = SP.score_plane("csu", (float(s[a]), float(s[b])), (float(y[0, a]), float(y[0, b])), grid, grid)

    def full_at(za, zb):
        z = torch.tensor([[0.5, 0.0, -1.0, 0.0, 2.0]])
        z[0, a], z[0, b] = za, zb
        return float(full(z, y).detach())

    assert full_at(grid[6], grid[1]) - full_at(grid[0], grid[4]) == pytest.approx(
        surface[6, 1] - surface[0, 4], rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError, match="s_pair"):
        SP.score_plane("csu", None, (1, 0), grid, grid)


def test_clip_logits_and_train_logits():
    torch.manual_seed(0)
    n, c = 8, 4
    clean = np.zeros((n, c), np.float32)
    clean[np.arange(n), [0, 0, 1, 1, 2, 2, 3, 3]] = 1
    labels = clean.copy()
    labels[1, 0], labels[1, 1] = 0, 1  # MAN 0 -> 1 (touches the pair (0, 1))
    labels[4, 3] = 1  # SAN 2 + 3 (not the pair)
    changed = np.zeros(n, bool)
    changed[[1, 4]] = True
    corr = CorruptionResult(CorruptionConfig(kind="man", ratio=0.25), labels, clean, changed,
                            np.zeros(n, np.int8), np.array([-1, 0, -1, -1, 2, -1, -1, -1]),
                            np.array([-1, 1, -1, -1, 3, -1, -1, -1]), np.zeros(c), np.zeros(c))
    feats = np.random.default_rng(0).normal(size=(n + 2, 6, 5)).astype(np.float32)
    store = SimpleNamespace(features=feats, batch=lambda rows: torch.from_numpy(feats[rows]))
    data = SimpleNamespace(store=store, train_idx=np.arange(2, n + 2), train_labels=labels, corruption=corr)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(30, c), torch.nn.Dropout(0.5))
    model.train()
    logits = SP.train_logits(model, data, batch_size=3)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        direct = model(torch.from_numpy(feats[2:])).numpy()
    np.testing.assert_allclose(logits, direct, rtol=1e-6, atol=1e-6)

    df = SP.clip_logits(None, data, (0, 1), logits=logits)
    assert list(df["row"]) == [0, 1, 2, 3]  # clips with a positive of class 0 or 1
    assert list(df["corrupted"]) == [False, True, False, False]
    np.testing.assert_allclose(df["z_a"], logits[:4, 0])
    np.testing.assert_allclose(df["z_b"], logits[:4, 1])
    assert list(df["y_b"]) == [0, 1, 1, 1] and list(df["clean_b"]) == [0, 0, 1, 1]
    same = SP.clip_logits(model, data, (0, 1))
    pd.testing.assert_frame_equal(df, same, rtol=1e-6)
    all_clips = SP.clip_logits(None, data, (2, 3), logits=logits, subset="all")
    assert len(all_clips) == n and all_clips["corrupted"].sum() == 1 and all_clips["clip_corrupted"].sum() == 2
    pairs = SP.corruption_pairs(corr)
    assert pairs[["source", "target", "count"]].values.tolist() == [[0, 1, 1], [2, 3, 1]]


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


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_plot_sigma_kde_and_vs_truth(fake_runs):
    dens = SS.sigma_densities(S.sigma_table(fake_runs), split_corrupted=True)
    ax = plots.plot_sigma_kde(dens, title="t")
    assert len(ax.lines) == len(dens)
    assert [t.get_text().split(" (n=")[0] for t in ax.get_legend().get_texts()] == list(dens)
    ax2 = plots.plot_sigma_kde({"san": (np.linspace(0, 1, 5), np.ones(5))})
    assert len(ax2.lines) == 1

    res = SS.sigma_vs_truth(SIGMA, RATE, k=3, n_boot=100)
    top = FS.top_sigma_classes(SIGMA, RATE, res["k"])
    np.testing.assert_array_equal(top, ST.top_k(SIGMA, 3))
    ax = plots.plot_sigma_vs_truth(SIGMA, RATE, res, label="san 50%", top=top)
    assert len(ax.collections) == 2  # the classes and the top-k rings
    assert len(ax.collections[0].get_offsets()) == 10 and len(ax.collections[1].get_offsets()) == 3
    legend = ax.get_legend().get_texts()[0].get_text()
    assert f"{res['rho']:.2f}" in legend and f"{res['ci_lo']:.2f}" in legend and "P@3" in legend


def test_plot_score_plane():
    grid_a, grid_b = np.linspace(-4, 4, 9), np.linspace(-3, 3, 7)
    surf = SP.score_plane("csu", (0.5, -0.5), (1, 0), grid_a, grid_b)
    clips = pd.DataFrame({"z_a": [0.1, 1.0, -2.0], "z_b": [0.0, 2.0, -1.0], "corrupted": [False, True, False]})
    import matplotlib.pyplot as plt
    from matplotlib.contour import ContourSet

    fig, axes = plt.subplots(1, 2)
    plots.plot_score_plane(SP.score_plane("bce", None, (1, 0), grid_a, grid_b), grid_a, grid_b, clips, axes[0])
    ax = plots.plot_score_plane(surf, grid_a, grid_b, clips, axes[1], class_names=("dog", "cat"))
    assert sum(isinstance(c, ContourSet) for c in ax.collections) == 2  # filled + lines
    scat = [c for c in ax.collections if not isinstance(c, ContourSet)]
    assert sorted(len(c.get_offsets()) for c in scat) == [1, 2]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["clean clips (n=2)", "corrupted clips (n=1)"]
    assert "dog" in ax.get_xlabel() and ax.get_xlim() == (-4.0, 4.0)
    with pytest.raises(ValueError):
        plots.plot_score_plane(surf.T, grid_a, grid_b)


def test_plot_landscapes_and_plotly(tmp_path):
    from matplotlib.contour import ContourSet

    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
    curves = {"bce": alphas ** 2, "csu": np.vstack([alphas ** 2, 2 * alphas ** 2])}
    means = FS.mean_curves(curves)
    assert list(means) == ["csu"] and np.allclose(means["csu"], 1.5 * alphas ** 2)
    ax = plots.plot_landscape_1d(alphas, curves, means=means)
    assert len(ax.lines) == 1 + 2 + 1 + 1  # bce, two csu directions + their mean, the alpha=0 line
    assert np.allclose(ax.lines[3].get_ydata(), 1.5 * alphas ** 2)
    with pytest.raises(ValueError, match="means"):  # the plot does not average: it is given the mean
        plots.plot_landscape_1d(alphas, curves)
    surface = 1 + np.add.outer(alphas ** 2, 2 * betas ** 2)
    ax = plots.plot_landscape_2d(alphas, betas, surface, log=True)
    assert any(isinstance(c, ContourSet) for c in ax.collections)
    assert ax.lines[-1].get_xydata().tolist() == [[0.0, 0.0]]
    fig = plots.plotly_landscape_2d(alphas, betas, surface, title="x")
    assert fig.data[0].type == "surface"
    assert np.asarray(fig.data[0].z).shape == (4, 5)  # rows = beta
    path = figure_files.save_plotly(fig, "land", tmp_path)
    html = path.read_text()
    assert path.name == "land.html" and len(html) > 1_000_000  # plotly.js embedded: works offline
    assert 'src="https://cdn.plot.ly' not in html


def test_plot_geometry_summary():
    def summ(v):
        return {"top_eigenvalue": v, "hessian_trace": 10 * v, "epsilon_sharpness": v / 10, "mean_loss_rise": v / 5}

    axes = plots.plot_geometry_summary(FS.geometry_bars({"bce": summ(2.0), "csu": summ(1.0)}))
    assert len(axes) == 4
    assert all(len(ax.patches) == 2 for ax in axes)
    assert axes[0].patches[0].get_height() == pytest.approx(2.0)
    nested = {"san 50%": {"bce": [summ(2.0), summ(3.0)], "csu": [summ(1.0), summ(1.5)]},
              "man 50%": {"bce": [summ(4.0), summ(4.5)], "csu": [summ(2.0), summ(2.5)]}}
    bars = FS.geometry_bars(nested, statistics=["top_eigenvalue", "hessian_trace"])
    row = bars[(bars["statistic"] == "top_eigenvalue") & (bars["condition"] == "san 50%") & (bars["method"] == "bce")]
    m, lo, hi = ST.mean_ci(np.array([2.0, 3.0]))
    assert row[["mean", "lo", "hi", "n"]].to_numpy().tolist() == [[float(m), float(lo), float(hi), 2]]
    axes = plots.plot_geometry_summary(bars)
    assert len(axes) == 2 and len(axes[0].patches) == 4
    assert axes[0].patches[0].get_height() == pytest.approx(2.5)  # bce, san: mean of 2 and 3
    assert len(axes[0].lines) > 0  # error bars (two runs)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["san 50%", "man 50%"]


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
