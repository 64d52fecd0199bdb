"""The figure report: ``<fig_dir>/index.html``, one self-contained page with every figure.

For each figure (a PNG in ``fig_dir``): its title and one-sentence reading
(:data:`csu_lib.report.catalog.CATALOG`), the image itself (embedded as a data URI), how many
runs and which seeds stand behind it (the ``runs_behind`` block of its JSON), its key numbers
(read from its JSON by the catalog), the notebook and parameters that made it (the manifest of
``csu figures``), links to its PDF and JSON, and, where the notebook wrote a plotly figure, the
interactive version (plotly.js embedded once). The header gives the profile, dataset, date, git
commit and versions. The page needs no server and nothing from the network.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, Optional

from ..core.io import atomic_write_text, read_json
from .catalog import CATALOG, FigureEntry, key_numbers
from .manifest import load_manifest

INDEX = "index.html"
#: The mark of a key-number row whose JSON could not be read (tests look for it).
_UNREADABLE = ' class="unreadable"'

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 0 18px 60px; color: #222; }
h1 { margin-top: 28px; } h2 { margin: 0 0 4px; font-size: 1.25em; } code { font-size: 0.9em; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f5f5f5; font-weight: 600; }
section.figure { border-top: 2px solid #ddd; padding-top: 18px; margin-top: 26px; }
section.figure img { max-width: 100%; height: auto; display: block; margin: 10px 0; }
.reading { font-style: italic; } .runs { font-weight: 600; } .made-by, .links { color: #555; font-size: 0.92em; }
.plotly-figure { width: 100%; height: 560px; } nav ol { columns: 2; } .warning { color: #a33; }
"""


def write_report(fig_dir: str | os.PathLike, *, title: str = "csu-lab figures") -> Path:
    """Write ``<fig_dir>/index.html`` from the figures there and the manifest; returns its path."""
    fig_dir = Path(fig_dir)
    manifest = load_manifest(fig_dir)
    names = figure_names(fig_dir)
    made_by = {fig: (nb_name, entry) for nb_name, entry in manifest.get("notebooks", {}).items()
               for fig in entry.get("figures", [])}
    sections = [_section(fig_dir, name, CATALOG.get(name), made_by.get(name)) for name in names]
    plotly_js = _plotly_js() if any((fig_dir / f"{n}.plotly.json").is_file() for n in names) else None
    env = manifest.get("environment")
    page = "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style>",
        f'<script type="text/javascript">{plotly_js}</script>' if plotly_js else "",
        "</head><body>", f"<h1>{_e(title)}</h1>", _environment(env),
        "<p>Every interval on these figures is a 95% interval over the runs named under the figure; a "
        "figure's JSON holds the plotted numbers and the ids of those runs.</p>",
        "<nav><ol>" + "".join(f'<li><a href="#fig-{_e(n)}">{_e(_title(n))}</a></li>' for n in names) + "</ol></nav>",
        *sections, "</body></html>"])
    path = fig_dir / INDEX
    atomic_write_text(path, page)
    return path


def figure_names(fig_dir: str | os.PathLike) -> list[str]:
    """The figures in ``fig_dir`` (one per PNG): catalog order first, then the others by name."""
    present = {p.stem for p in Path(fig_dir).glob("*.png")}
    order = [n for n in CATALOG if n in present]
    return order + sorted(present - set(order))


def _section(fig_dir: Path, name: str, entry: Optional[FigureEntry], made_by) -> str:
    numbers = _read_numbers(fig_dir / f"{name}.json")
    png = base64.b64encode((fig_dir / f"{name}.png").read_bytes()).decode("ascii")
    reading = entry.reading if entry else "No reading in the catalog (csu_lib/report/catalog.py) for this figure."
    parts = [f'<section class="figure" id="fig-{_e(name)}" data-figure="{_e(name)}">',
             f"<h2>{_e(_title(name))} <code>{_e(name)}</code></h2>", f'<p class="reading">{_e(reading)}</p>',
             f'<img src="data:image/png;base64,{png}" alt="{_e(_title(name))}">',
             f'<p class="runs">{_e(_runs_line(numbers))}</p>']
    rows = key_numbers(name, numbers) if numbers is not None else []
    if rows:
        parts.append('<table class="numbers"><tr><th>key number</th><th>value</th></tr>'
                     + "".join(f"<tr{_UNREADABLE if v.startswith('not readable from ') else ''}><td>{_e(k)}</td><td>{_e(v)}</td>"
                             "</tr>" for k, v in rows) + "</table>")
    parts.append(f'<p class="made-by">{_made_by_line(name, entry, made_by)}</p>')
    spec = fig_dir / f"{name}.plotly.json"
    if spec.is_file():
        data = spec.read_text().replace("</", "<\\/")
        parts.append(f'<p>Interactive (drag to rotate, scroll to zoom):</p><div class="plotly-figure" '
                     f'id="plotly-{_e(name)}"></div><script type="text/javascript">(function () {{ var spec = {data}; '
                     f'Plotly.newPlot("plotly-{_e(name)}", spec.data, spec.layout, {{responsive: true}}); }})();</script>')
    links = [f'<a href="{_e(name)}.{ext}">{ext.upper()}</a>' for ext in ("pdf", "json", "html")
             if (fig_dir / f"{name}.{ext}").is_file()]
    parts.append(f'<p class="links">Files: {" · ".join(links)}</p></section>')
    return "\n".join(parts)


def _read_numbers(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    value = read_json(path)
    return value if isinstance(value, dict) else {"value": value}


def _runs_line(numbers: Optional[dict]) -> str:
    behind = (numbers or {}).get("runs_behind")
    if behind is None:
        return "Runs behind it: not recorded (its JSON has no runs_behind block)."
    if behind["n_runs"] == 0:
        return "No trained model behind it: it shows the labels (the corruption draw) only."
    seeds = ", ".join(str(s) for s in behind["seeds"])
    line = f"Runs behind it: {behind['n_runs']} (seed{'s' if len(behind['seeds']) != 1 else ''} {seeds})"
    if "not_converged" not in behind:
        return line + "."
    n_not = len(behind["not_converged"])
    return line + (f"; {n_not} did not converge (last 10% of epochs: training loss changed by >= 2% or validation "
                   f"mAP by >= 0.01): {', '.join(behind['not_converged'])}." if n_not else "; all converged.")


def _made_by_line(name: str, entry: Optional[FigureEntry], made_by) -> str:
    if made_by is None:
        where = f"notebooks/{entry.notebook}.ipynb" if entry else "an unknown notebook"
        return (f"Made by {_e(where)}, outside <code>csu figures</code> (no manifest entry): its parameters "
                "were not recorded here.")
    nb_name, run = made_by
    params = json.dumps(run.get("parameters", {}), sort_keys=True, default=str)
    executed = f"; executed copy: <code>{_e(run['executed'])}</code>" if run.get("executed") else ""
    return (f"Made by <code>{_e(run.get('notebook', nb_name))}</code> with parameters <code>{_e(params)}</code>, "
            f"started {_e(run.get('started', '?'))}, {_e(run.get('seconds', '?'))} s{executed}.")


def _environment(env: Optional[dict]) -> str:
    if not env:
        return ('<p class="warning">No manifest: these figures were not made by <code>csu figures</code>, so the '
                "profile, dataset and versions are not recorded.</p>")
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())
    data = env.get("data")
    rows = [("profile", env.get("profile")), ("dataset", data if isinstance(data, str) else json.dumps(data)),
            ("date", env.get("date")), ("git commit", env.get("git_commit") or "not in a git checkout"),
            ("machine", env.get("machine")), ("versions", versions)]
    return '<table class="environment">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"


def _title(name: str) -> str:
    entry = CATALOG.get(name)
    return entry.title if entry else name.replace("_", " ")


def _plotly_js() -> Optional[str]:
    try:
        from plotly.offline import get_plotlyjs  # optional: only for the interactive figures
    except ImportError:
        return None
    return get_plotlyjs()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
