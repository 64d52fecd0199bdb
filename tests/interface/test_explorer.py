"""The explorer's dropdowns in Python (no browser; tests/interface/test_browser_lab.py drives them in
JupyterLab): the widget opens at the selection it is given and keeps every value a user picks.
With ipywidgets 8, setting a Dropdown's options and value together under
``hold_trait_notifications`` resets the value to the first option, so the explorer opened at
clean / bce / the first class and snapped every choice back (found by the browser test)."""
from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    from csu_lib.explorer import Explorer
    from csu_lib.study import grid, run_all

    runs = tmp_path_factory.mktemp("explorer_runs") / "study"
    run_all(grid("smoke", conditions=["none", "san:0.5"], losses=["bce", "csu"], epochs=1, device="cpu"), runs,
            progress=False)
    return Explorer(runs)


def _boxes(widget) -> dict:
    return {box.description: box for row in widget.children[:2] for box in row.children}


@pytest.mark.slow
def test_dropdowns_open_at_the_selection_and_keep_what_is_picked(explorer):
    choice = explorer.defaults()
    assert choice["condition"] == "san 50%" and choice["method"] == "csu"  # not the first options
    boxes = _boxes(explorer.widget(**choice))
    assert {k: b.value for k, b in boxes.items()} == {
        "study": choice["study"], "condition": "san 50%", "backbone": choice["backbone"], "method": "csu",
        "class": choice["class_name"]}
    boxes["condition"].value = "clean"
    assert boxes["condition"].value == "clean" and boxes["method"].value == "csu"
    other = next(c for c in boxes["class"].options if c != choice["class_name"])
    boxes["class"].value = other
    assert boxes["class"].value == other and boxes["condition"].value == "clean"
    boxes["method"].value = "bce"
    assert (boxes["method"].value, boxes["class"].value) == ("bce", other)


@pytest.mark.slow
def test_widget_draws_on_figures_pyplot_does_not_track(explorer, monkeypatch):
    """In JupyterLab the kernel handles widget messages on a subshell thread, and every comm message
    ends with matplotlib-inline drawing and closing every open pyplot figure: a redraw drawing a
    pyplot figure was drawn and closed from that thread too and came out blank (found in the
    browser). So when the widget displays a figure, pyplot has none open, and the figure drawn
    is the selection's."""
    import IPython.display
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    plt.close("all")
    shown = []

    def record(obj, *args, **kwargs):
        if isinstance(obj, Figure):
            shown.append((plt.get_fignums(), obj.axes[1].get_title()))

    monkeypatch.setattr(IPython.display, "display", record)
    choice = explorer.defaults()
    boxes = _boxes(explorer.widget(**choice))
    other = next(c for c in boxes["class"].options if c != choice["class_name"])
    boxes["class"].value = other
    assert shown == [([], f"(b) CSU multiplier of {choice['class_name']}"), ([], f"(b) CSU multiplier of {other}")]
    assert plt.get_fignums() == []


def test_conditions_are_ordered_clean_first_then_kind_ratio_and_design():
    """Uniform and audit-design labels of one kind and ratio sort side by side (an audit label
    once broke the explorer: 'san 50% (audit)' was read as a ratio)."""
    from csu_lib.analysis.explorer import _ordered_conditions

    labels = ["san 50% (audit)", "man 50%", "clean", "san 50%", "san 20%", "man 50% (audit)"]
    assert _ordered_conditions(labels) == ["clean", "man 50%", "man 50% (audit)", "san 20%", "san 50%",
                                           "san 50% (audit)"]
