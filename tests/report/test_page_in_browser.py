"""The figure report `make figures` wrote (figures/index.html, or the one ``$CSU_REPORT`` names)
in a real browser: every figure on it loads, every section is complete, the plotly figure draws
(tests/browser.py: check_report). Skipped until `make figures` has run: a fresh clone has no
report, and the main job takes ~40 minutes (tests/interface/test_real_figures.py checks the report of a
smoke figure set on every run)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.browser import ROOT, artifact_dir, check_report, require_browser

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_the_report_of_make_figures_loads_in_a_browser():
    require_browser()
    index = Path(os.environ.get("CSU_REPORT") or ROOT / "figures" / "index.html")
    if not index.is_file():
        pytest.skip(f"no {index}: run `make figures` first (or set CSU_REPORT=path/to/index.html)")
    n = check_report(index, artifact_dir("make_figures_report") / "index.png")
    print(f"{index}: {n} figures load, every section complete")
