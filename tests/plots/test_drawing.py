"""The figures of csu_lib.plots drawn from known numbers: what each axis shows (bars, lines,
labels), the plotly export.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from csu_lib import plots
from csu_lib.analysis import figure_stats as FS
from csu_lib.analysis import score_plane as SP
from csu_lib.analysis import sigma as S
from csu_lib.analysis import sigma_stats as SS
from csu_lib.core import stats as ST
from csu_lib.report import figure_files
from tests.analysis.test_sigma import RATE, SIGMA, fake_runs  # noqa: F401  (fixture)


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


def test_the_trajectory_draws_the_learned_s_and_its_s_star_companion():
    grid = np.linspace(0, 1, 5)
    epoch = pd.DataFrame({"progress": grid, "mean": np.ones(5), "lo": np.ones(5), "hi": np.ones(5), "n_runs": 2,
                          "optimum": [np.nan, np.nan, 2.0, 3.0, 4.0], "optimum_lo": np.ones(5),
                          "optimum_hi": np.ones(5), "n_runs_optimum": 2})
    step = epoch[["progress", "mean", "lo", "hi", "n_runs"]]
    ax = plots.plot_multiplier_trajectories({"san 50%": epoch, "clean": step})
    styles = [(line.get_linestyle(), line.get_color()) for line in ax.lines]
    assert len(ax.lines) == 3 and styles[0][0] == "-" and styles[1] == ("--", styles[0][1])  # same colour, dashed
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["san 50%: learned s (n=2)", "san 50%: s* of the epoch's steps (n=2)", "clean: learned s (n=2)"]
    assert "multiplier" in ax.get_ylabel()


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
