"""Paired differences over seeds (CSU - BCE, method - BCE) against hand-computed numbers."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from csu_lib.analysis.results import paired_difference
from csu_lib.core import stats

T2 = 4.302652729749464  # Student t, 0.975 quantile, 2 degrees of freedom


def test_core_paired_difference_uses_shared_seeds_only():
    seeds, mean, lo, hi = stats.paired_difference({0: 0.5, 1: 0.6, 2: 0.7, 9: 0.0}, {0: 0.6, 1: 0.6, 2: 0.9, 5: 1.0})
    assert seeds == [0, 1, 2]
    diffs = [0.1, 0.0, 0.2]
    sd = math.sqrt(sum((d - 0.1) ** 2 for d in diffs) / 2)
    assert mean == pytest.approx(0.1)
    assert lo == pytest.approx(0.1 - T2 * sd / math.sqrt(3))
    assert hi == pytest.approx(0.1 + T2 * sd / math.sqrt(3))
    none = stats.paired_difference({0: 1.0}, {1: 1.0})
    assert none[0] == [] and math.isnan(none[1])


def test_degradation_paired_difference_by_setting():
    rows = []
    for seed, (bce_clean, csu_clean, bce_san, csu_san) in enumerate([(0.8, 0.7, 0.5, 0.6), (0.9, 0.9, 0.6, 0.6),
                                                                     (0.7, 0.8, 0.4, 0.7)]):
        for kind, ratio, loss, value in [("none", 0.0, "bce", bce_clean), ("none", 0.0, "csu", csu_clean),
                                         ("san", 0.5, "bce", bce_san), ("san", 0.5, "csu", csu_san)]:
            rows.append({"corruption.kind": kind, "corruption.ratio": ratio, "model.name": "m",
                         "method.name": "none", "loss.name": loss, "train.seed": seed, "test.mAP": value})
    rows.append({**rows[-1], "train.seed": 7})  # a CSU run without its BCE pair: left out
    table = paired_difference(pd.DataFrame(rows))
    by = {(r["kind"], r["ratio"]): r for _, r in table.iterrows()}
    assert set(by) == {("san", 0.0), ("san", 0.5)}  # clean runs are the 0% point of the type present
    clean, san = by[("san", 0.0)], by[("san", 0.5)]
    assert clean["n"] == 3 and clean["mean"] == pytest.approx(0.0)
    assert san["seeds"] == [0, 1, 2] and san["mean"] == pytest.approx((0.1 + 0.0 + 0.3) / 3)
    sd = math.sqrt(sum((d - 0.4 / 3) ** 2 for d in (0.1, 0.0, 0.3)) / 2)
    assert san["ci_hi"] - san["mean"] == pytest.approx(T2 * sd / math.sqrt(3))
