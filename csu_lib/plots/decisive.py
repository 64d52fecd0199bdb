"""The decisive study's figure (notebooks/decisive.ipynb): every run's paired difference to BCE
with its 95% CI, one panel per condition; numbers from
:func:`csu_lib.analysis.decisive.paired_to_bce`."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .style import PALETTE

#: How the oracles are drawn: open black diamonds, apart from the methods' filled circles.
ORACLE_STYLE = {"marker": "D", "color": "black", "mfc": "white"}


def plot_paired_to_bce(paired: pd.DataFrame, *, metric: str = "test.mAP", reference: str = "bce",
                       title: str | None = None, ncols: int = 4, clip: float | None = 0.15) -> plt.Figure:
    """One panel per condition (and per optimiser / learning rate / model when the table holds
    several), one row per run spec in table order: the mean paired difference of ``metric`` to
    ``reference`` with its 95% CI as a horizontal bar, ``n`` (pairs of seeds) beside each point, a
    dashed line at 0. Oracle runs (``oracle`` column) are open black diamonds and named
    ``(oracle)``: reference points that read the corruption record, not competitors.

    ``clip``: the x axis spans [-clip, clip] when a run lies beyond it (a collapsed loss would otherwise
    squeeze every other interval to a dot); such a run is drawn as a triangle at the edge with its
    mean written beside it. None: the axis fits every interval.

    ``paired``: :func:`csu_lib.analysis.decisive.paired_to_bce` (its rows of ``metric`` are drawn)."""
    rows = paired[paired["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no paired difference of {metric} to draw")
    settings = ["optimizer", "lr", "model"]
    panels = list(dict.fromkeys(zip(rows["condition"], *(rows[k] for k in settings))))
    several = len({p[1:] for p in panels}) > 1
    runs = list(dict.fromkeys(rows["run"]))
    oracle = dict(zip(rows["run"], rows["oracle"]))
    y = {run: len(runs) - 1 - i for i, run in enumerate(runs)}
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    size = (2.0 + 3.0 * ncols, (0.3 * len(runs) + 1.2) * nrows + 0.4)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, sharey=True, squeeze=False, layout="constrained")
    for ax, panel in zip(axes.flat, panels):
        part = rows[(rows["condition"] == panel[0]) & (rows["optimizer"] == panel[1]) & (rows["lr"] == panel[2])
                    & (rows["model"] == panel[3])]
        off_scale = clip is not None and bool((part["mean"].abs() > clip).any())
        for _, row in part.iterrows():
            m, lo, hi = float(row["mean"]), float(row["ci_lo"]), float(row["ci_hi"])
            style = ORACLE_STYLE if row["oracle"] else {"marker": "o", "color": _colour(row["run"], runs)}
            if off_scale and abs(m) > clip:
                edge = clip if m > 0 else -clip
                ax.plot([edge], [y[row["run"]]], ls="none", ms=6, **{**style, "marker": ">" if m > 0 else "<"})
                ax.annotate(f"{m:+.2f} (n={int(row['n'])})", (edge, y[row["run"]]), xytext=(-4 if m > 0 else 4, 6),
                            textcoords="offset points", fontsize=6, va="bottom", ha="right" if m > 0 else "left",
                            color="#555555")
                continue
            ax.errorbar([m], [y[row["run"]]], xerr=[[m - lo], [hi - m]], ls="none", ms=5, capsize=2.5, lw=1.2,
                        **style)
            ax.annotate(f"n={int(row['n'])}", (hi, y[row["run"]]), xytext=(3, 0), textcoords="offset points",
                        fontsize=6, va="center", color="#555555")
        if off_scale:
            ax.set_xlim(-clip * 1.08, clip * 1.08)
        ax.axvline(0, color="black", lw=1.0, ls="--", zorder=1.5)
        ax.set_title(panel[0] + (f"\n{panel[1]} lr {panel[2]:g}, {panel[3]}" if several else ""), fontsize=9)
        ax.grid(False, axis="y")
        ax.set_xlabel(f"{metric} − {reference.upper()}", fontsize=8)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    axes[0, 0].set_yticks(list(y.values()), [f"{run} (oracle)" if oracle[run] else run for run in y])
    axes[0, 0].set_ylim(-0.7, len(runs) - 0.3)
    fig.suptitle((title or f"Paired difference to {reference.upper()} on the same seeds") +
                 "\nmean and 95% CI over the pairs of seeds (n); open diamonds: oracles, which read the corruption "
                 "record", fontsize=9)
    return fig


def _colour(run: str, runs: list[str]) -> str:
    """A run's colour: the palette's for its loss (BCE grey, CSU blue), else a cycle colour by its
    place in ``runs``."""
    return PALETTE.get(str(run).split("+")[0], f"C{runs.index(run) % 10}")
