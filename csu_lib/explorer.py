"""The interactive explorer of run records (notebooks/explorer.ipynb): the numbers of
:class:`csu_lib.analysis.explorer.ExplorerData`, drawn by :func:`csu_lib.plots.plot_explorer`,
with ipywidgets dropdowns (study, condition, backbone, method, class) in JupyterLab.

:meth:`Explorer.view` draws a view (static: what papermill renders); :meth:`Explorer.widget`
wraps it in dropdowns that redraw it. Nothing here trains or probes.

The widget draws each view on a figure pyplot does not track. JupyterLab (4.4+, "comms over
subshells") sends widget messages to an ipykernel 7 subshell, a thread of its own, and every
comm message ends with IPython's ``post_execute`` event, on which matplotlib-inline displays and
closes *every open pyplot figure*. With a pyplot figure, a message handled while a redraw was
drawing (the Output widget syncing its outputs) drew and closed the same figure from that second
thread, and the redraw came out blank: the widget showed a blank figure after a change, the same
blank bytes after the next one, while its table was new (found by tests/interface/test_browser_lab.py;
traced by logging every display call in the kernel with its thread and the open figures).
"""
from __future__ import annotations

import threading
from typing import Optional

import pandas as pd
from matplotlib.figure import Figure

from .analysis.explorer import ExplorerData
from .core.errors import CsuError
from .plots import plot_explorer


class Explorer(ExplorerData):
    """The run records below ``runs_dir`` and its sibling study folders, drawn."""

    def view(self, study: Optional[str] = None, condition: Optional[str] = None, backbone: Optional[str] = None,
             method: Optional[str] = None, class_name: Optional[str] = None, *,
             pyplot: bool = True) -> tuple[Figure, pd.DataFrame]:
        """Draw the four panels for a selection (None: :meth:`defaults`); returns (figure, summary).
        ``pyplot=False``: the figure is not one of pyplot's (see the module docstring)."""
        numbers = super().view(study, condition, backbone, method, class_name)
        return plot_explorer(numbers, pyplot=pyplot), numbers.summary

    def widget(self, **initial):
        """Dropdowns (study, condition, backbone, method, class) over :meth:`view` (JupyterLab)."""
        import ipywidgets as W  # optional: only in a live kernel
        from IPython.display import display

        start = {**self.defaults(initial.get("study")), **{k: v for k, v in initial.items() if v}}
        boxes = {k: W.Dropdown(description=k.replace("_name", ""), layout=W.Layout(width="300px"))
                 for k in ("study", "condition", "backbone", "method", "class_name")}
        out = W.Output()
        updating = False  # refresh sets the dropdowns itself: no nested refresh for those changes
        lock = threading.RLock()  # widget messages may arrive on more than one kernel thread: one redraw at a time

        def refresh(*_):
            with lock:
                _refresh()

        def _refresh():
            nonlocal updating
            if updating:
                return
            updating = True
            try:
                opts = self.options(boxes["study"].value, boxes["condition"].value, boxes["backbone"].value)
                for key, name in (("condition", "condition"), ("backbone", "backbone"), ("method", "method"),
                                  ("class_name", "class")):
                    box = boxes[key]
                    value = box.value if box.value in opts[name] else opts[name][0]
                    # not in hold_trait_notifications: ipywidgets 8 then resets the value to the first option
                    if list(box.options) != list(opts[name]):
                        box.options = opts[name]
                    box.value = value
            finally:
                updating = False
            out.clear_output()
            with out:
                try:
                    fig, table = self.view(**{k: b.value for k, b in boxes.items()}, pyplot=False)
                    display(table.round(3))
                    display(fig)
                except CsuError as exc:
                    print(exc)

        boxes["study"].options = self.studies()
        boxes["study"].value = start["study"]
        opts = self.options(start["study"], start["condition"], start["backbone"])
        for key, name in (("condition", "condition"), ("backbone", "backbone"), ("method", "method"),
                          ("class_name", "class")):
            boxes[key].options = opts[name]
            boxes[key].value = start[key]
        for box in boxes.values():
            box.observe(refresh, names="value")
        refresh()
        return W.VBox([W.HBox(list(boxes.values())[:3]), W.HBox(list(boxes.values())[3:]), out])
