"""Executing the suite's notebooks with papermill (used by ``csu figures`` and the tests)."""
from __future__ import annotations

import logging
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

from .core.errors import CsuError
from .core.paths import project_root

#: The notebooks ``csu figures`` executes, in order. They share one runs folder and runs are keyed
#: by config hash, so a run is trained once, by the first notebook that needs it: ``degradation``
#: trains the main grid (clean + every type x ratio, BCE and CSU), which the trajectory, score-plane,
#: landscape, class-precision and quickstart notebooks reuse; ``sigma_analysis`` adds the
#: class-dependent corruption runs and ``comparison`` the compared methods. ``explorer`` only reads.
FIGURE_NOTEBOOKS: tuple[str, ...] = ("corruption", "degradation", "sigma_trajectory", "sigma_analysis", "score_plane",
                                     "landscape", "class_precision", "comparison", "quickstart", "explorer")
#: The notebooks that run a study file (its ``study`` parameter) instead of making figures of the
#: shared runs folder; ``csu figures`` does not execute them (``make study`` does: the Makefile).
STUDY_NOTEBOOKS: tuple[str, ...] = ("decisive",)


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
            progress_bar: bool = False, log_output: bool = False, kernel: Optional["WarmKernel"] = None) -> Path:
    """Run ``notebooks/<name>.ipynb`` through papermill from the repository root.

    With ``log_output`` the notebook's printed output is streamed to this process's stdout.
    The kernel is this interpreter's (``sys.prefix/share/jupyter`` goes first on
    ``JUPYTER_PATH``), so the notebook sees the same csu_lib as the caller. A failing cell
    raises :class:`CsuError` carrying the notebook's own error message. ``kernel``: a
    :class:`WarmKernel` to run in (shut down afterwards) instead of a new one. A notebook with a
    ``show_widgets`` parameter runs with it False unless ``parameters`` sets it.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    src = notebook_path(name)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _use_own_kernel()
    if log_output:
        logger = logging.getLogger("papermill")
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("    %(message)s"))
            handler.addFilter(lambda rec: not str(rec.getMessage()).startswith(("Executing Cell", "Ending Cell")))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    if "show_widgets" in declared_parameters(name) and "show_widgets" not in parameters:
        # a batch run never shows widgets: papermill cannot drive them, and a cell that displays
        # ipywidgets can leave it waiting forever for a reply (nbclient issue 312; seen once in CI)
        parameters = {**parameters, "show_widgets": False}
    engine_kwargs = {} if kernel is None else {"km": kernel.ready()}
    try:
        pm.execute_notebook(str(src), str(output), parameters=dict(parameters), cwd=str(project_root()),
                            kernel_name="python3", progress_bar=progress_bar, log_output=log_output,
                            **engine_kwargs)
    except PapermillExecutionError as exc:
        raise CsuError(f"notebook {name} failed ({exc.ename}: {exc.evalue}); executed copy: {output}") from None
    finally:
        if kernel is not None:
            kernel.shutdown()
    return output


def _use_own_kernel() -> None:
    """Put this interpreter's kernelspec first on ``JUPYTER_PATH``."""
    kernels = str(Path(sys.prefix) / "share" / "jupyter")
    if os.environ.get("JUPYTER_PATH", "").split(os.pathsep)[0] != kernels:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([kernels, *filter(None, [os.environ.get("JUPYTER_PATH")])])


class WarmKernel:
    """A notebook kernel started ahead of its notebook, with the suite's imports already running.

    ``csu figures`` starts the next notebook's kernel before it executes the current one, so the
    kernel start and the imports (PyTorch, pandas, SciPy, matplotlib: ~6 s of the ~8-15 s a
    figure notebook takes when its runs exist) overlap the current notebook. The imports are
    the ones every notebook makes first anyway; the notebook then runs its cells unchanged.
    Pass it to :func:`execute` as ``kernel``; it is shut down when that notebook ends.
    """

    def __init__(self) -> None:
        from jupyter_client import AsyncKernelManager, BlockingKernelClient
        from jupyter_core.utils import run_sync

        class _KernelManager(AsyncKernelManager):
            """Remembers the clients papermill makes, to close them (papermill closes only its own)."""

            def client(self, **kwargs):
                kc = super().client(**kwargs)
                clients.append(kc)
                return kc

        _use_own_kernel()
        self._run_sync = run_sync
        clients: list = []
        self._clients = clients
        self.km = _KernelManager(kernel_name="python3")
        run_sync(self.km.start_kernel)(cwd=str(project_root()))
        self._client = BlockingKernelClient()
        self._client.load_connection_info(self.km.get_connection_info())
        # the shell channel only: the reply is all ready() reads, and a heartbeat thread stopped
        # right after its start (a warm kernel shut down unused) failed creating its socket
        self._client.start_channels(iopub=False, stdin=False, hb=False, control=False)
        self._warm_id = self._client.execute(WARM_IMPORTS, silent=True, store_history=False)

    def ready(self, timeout: float = 300.0):
        """Wait for the imports to finish; returns the kernel manager for papermill."""
        if self._client is not None:
            deadline = time.monotonic() + timeout
            try:
                while time.monotonic() < deadline:
                    reply = self._client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
                    if reply["parent_header"].get("msg_id") == self._warm_id:
                        break
            except queue.Empty:
                pass  # the notebook's own first cell will wait for the kernel instead
            finally:
                self._client.stop_channels()
                self._client = None
        return self.km

    def shutdown(self) -> None:
        if self._client is not None:
            self._client.stop_channels()
            self._client = None
        while self._clients:  # the notebook's client: its sockets and zmq context (open files otherwise)
            kc = self._clients.pop()
            kc.stop_channels()
            kc.context.destroy(linger=0)
        try:
            self._run_sync(self.km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001 - a kernel that is already gone needs no shutdown
            pass


#: How many notebooks ahead ``csu figures`` starts warm kernels: re-rendering, a notebook takes
#: 5-15 s and a kernel's start and imports ~6 s, so one ahead still left imports to wait for.
WARM_AHEAD = 2

#: What a warm kernel imports before its notebook runs (every figure notebook imports these).
WARM_IMPORTS = "import matplotlib.pyplot, pandas, seaborn, IPython.display, csu_lib, csu_lib.plots, csu_lib.analysis"
