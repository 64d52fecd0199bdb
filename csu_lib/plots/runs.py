"""Figures of single runs: a clip's log-mel, learning curves, the final sigma per class
(notebooks/quickstart.ipynb) and the explorer's four panels (:mod:`csu_lib.analysis.explorer`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .style import PALETTE


def plot_logmel(features: np.ndarray, ax: plt.Axes | None = None, *, title: str | None = None) -> plt.Axes:
    """One clip's log-mel features (mels, frames) as an image."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 2.6))
    ax.imshow(np.asarray(features, dtype=np.float32), origin="lower", aspect="auto", cmap="magma")
    ax.set(title=title, xlabel="frame", ylabel="mel bin")
    return ax


def plot_history(history: pd.DataFrame, *, title: str | None = None) -> plt.Figure:
    """Training loss and validation mAP per epoch of one run (``RunRecord.history``)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(history["epoch"] + 1, history["train_loss"], "o-", label="train loss")
    ax2 = ax.twinx()
    ax2.plot(history["epoch"] + 1, history["val.mAP"], "s-", color="C1", label="val mAP")
    ax.set(xlabel="epoch", ylabel="train loss", title=title)
    ax2.set_ylabel("validation mAP")
    fig.legend(loc="upper center", fontsize=8)
    return fig


def plot_class_sigma(table: pd.DataFrame, *, kind: str = "none") -> plt.Axes:
    """The final learned sigma of every class of one run (rows of
    :func:`csu_lib.analysis.sigma.sigma_table` with ``class_name``), the classes the corruption
    ``kind`` touched coloured."""
    _, ax = plt.subplots(figsize=(11, 3))
    colours = np.where(table["class_rate"] > 0, PALETTE.get(kind, "C3"), "#999999")
    ax.bar(np.arange(len(table)), table["sigma"], color=colours)
    ax.set_xticks(np.arange(len(table)), table["class_name"], rotation=90, fontsize=6)
    ax.set(ylabel=r"learned $\sigma_c$", title=r"final $\sigma_c$ per class (coloured: classes the corruption touched)")
    return ax


def plot_explorer(view, *, pyplot: bool = True) -> Figure:
    """The explorer's four panels of an :class:`~csu_lib.analysis.explorer.ExplorerView`.

    ``pyplot=False``: a figure pyplot does not track (``plt.close`` and the inline backend's
    end-of-cell display never see it); what the explorer widget draws in a callback."""
    sel, table = view.selection, view.summary
    method, class_name = sel["method"], sel["class_name"]
    size = dict(figsize=(11, 7), layout="constrained")
    fig = plt.figure(**size) if pyplot else Figure(**size)
    axes = fig.subplots(2, 2)
    colour = PALETTE.get(method.split("+")[0], "C0")
    ax = axes[0, 0]
    for seed, epochs, values in view.val_curves:
        ax.plot(epochs, values, "o-", ms=3, color=colour, label=f"seed {seed}")
    ax.set(xlabel="epoch", ylabel="validation mAP", title=f"(a) {method}: {sel['condition']}, {sel['backbone']}")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for i, (label, progress, values) in enumerate(view.multiplier_curves):
        ax.plot(progress, values, lw=1.2, color=f"C{i % 10}", label=label)
    if view.multiplier_curves:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no CSU run here:\nBCE learns no sigma", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="training progress", ylabel=r"$1/\sigma^2$", title=f"(b) CSU multiplier of {class_name}")
    y = np.arange(len(table))[::-1]
    colours = [PALETTE.get(m.split("+")[0], "C0") for m in table["method"]]
    edge = ["black" if s else "none" for s in table["selected"]]
    axes[1, 0].barh(y, table["test.mAP"], color=colours, edgecolor=edge, linewidth=1.5)
    axes[1, 0].set_yticks(y, table["method"])
    axes[1, 0].set(xlabel="test mAP (mean over seeds)", title="(c) every method here")
    axes[1, 1].barh(y, table["class precision"].fillna(0), color=colours, edgecolor=edge, linewidth=1.5)
    for yi, value in zip(y, table["class precision"]):
        if not np.isfinite(value):
            axes[1, 1].text(0.01, yi, "no positive prediction", va="center", fontsize=8)
    axes[1, 1].set_yticks(y, table["method"])
    rate = float(table["class corruption rate"].iloc[0])
    axes[1, 1].set(xlabel=f"test precision at {view.threshold:g}", xlim=(0, 1),
                   title=f"(d) {class_name}: precision (corrupted: {rate:.0%} of its clips)")
    fig.suptitle(f"study {sel['study']}")
    return fig
