"""Executing the suite's notebooks with papermill (used by ``csu figures`` and the tests)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from .core.errors import CsuError
from .core.paths import project_root

#: The notebooks ``csu figures`` executes, in order. They share one runs folder and runs are keyed
#: by config hash, so a run is trained once, by the first notebook that needs it: ``degradation``
#: trains the main grid (clean + every type x ratio, BCE and CSU), which the trajectory, score-plane,
#: landscape, class-precision and quickstart notebooks reuse; ``sigma_analysis`` adds the
#: class-dependent corruption runs and ``comparison`` the compared methods. ``explorer`` only reads.
FIGURE_NOTEBOOKS: tuple[str, ...] = ("corruption", "degradation", "sigma_trajectory", "sigma_analysis", "score_plane",
                                     "landscape", "class_precision", "comparison", "quickstart", "explorer")


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def notebook_path(name: str) -> Path:
    path = notebook_dir() / f"{name}.ipynb"
    if not path.is_file():
        available = sorted(p.stem for p in notebook_dir().glob("*.ipynb"))
        raise CsuError(f"no notebook named {name!r} in {notebook_dir()}; available: {available}")
    return path


def declared_parameters(name: str) -> set[str]:
    """The names assigned in a notebook's ``parameters`` cell."""
    import papermill as pm

    return set(pm.inspect_notebook(str(notebook_path(name))))


def execute(name: str, output: str | os.PathLike, parameters: Mapping[str, Any], *,
            progress_bar: bool = False, log_output: bool = False) -> Path:
    """Run ``notebooks/<name>.ipynb`` through papermill from the repository root.

    With ``log_output`` the notebook's printed output is streamed to this process's stdout.
    The kernel is this interpreter's (``sys.prefix/share/jupyter`` goes first on
    ``JUPYTER_PATH``), so the notebook sees the same csu_lib as the caller. A failing cell
    raises :class:`CsuError` carrying the notebook's own error message.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    src = notebook_path(name)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    kernels = str(Path(sys.prefix) / "share" / "jupyter")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([kernels, *filter(None, [os.environ.get("JUPYTER_PATH")])])
    if log_output:
        logger = logging.getLogger("papermill")
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("    %(message)s"))
            handler.addFilter(lambda rec: not str(rec.getMessage()).startswith(("Executing Cell", "Ending Cell")))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        pm.execute_notebook(str(src), str(output), parameters=dict(parameters), cwd=str(project_root()),
                            kernel_name="python3", progress_bar=progress_bar, log_output=log_output)
    except PapermillExecutionError as exc:
        raise CsuError(f"notebook {name} failed ({exc.ename}: {exc.evalue}); executed copy: {output}") from None
    return output
