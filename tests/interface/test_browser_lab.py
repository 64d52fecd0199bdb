"""Real-browser tests (headless Chromium through Playwright; see tests/browser.py):

- the explorer notebook in a live JupyterLab: run all cells; the widget must open at the
  selection the notebook printed; then change the condition, the class, and the class back, and
  check each time that the widget draws a new, not blank figure (the way back: the same figure as
  before) and keeps the chosen values, with no cell error;
- a plotly HTML figure written by the library: it renders (WebGL) and a drag rotates its
  3-D scene.

Screenshots of the final states go to test-output/browser/. Skipped without Chromium or
Playwright (how to enable them: tests/browser.py), failed instead with CSU_REQUIRE_BROWSER=1.
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests.browser import artifact_dir, browser_page, require_browser

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.browser]

#: Bounds of the waits (the CI machine is slow: a kernel start with the suite's imports ~10-20 s).
SERVER_START_S = 120
KERNEL_READY_S = 120
RUN_ALL_S = 240
REDRAW_S = 90


# -- a JupyterLab server of its own ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` from this interpreter on 127.0.0.1, with its own token, root folder and
    Jupyter config/runtime/data/settings/workspace folders (below ``home``; nothing of the
    user's is read or written). Kernels are this interpreter's ``python3`` kernelspec."""

    def __init__(self, root: Path, home: Path):
        self.root, self.home = root, home
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.log_path = home / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        req = urllib.request.Request(f"{self.base}/api/{path.lstrip('/')}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def start(self) -> None:
        dirs = {name: self.home / name for name in ("config", "runtime", "data", "ipython", "settings", "workspaces")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        news = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text(json.dumps({"fetchNews": "false"}))  # no "get Jupyter news?" toast over the page
        env = dict(os.environ)
        env.update({
            # this interpreter's kernelspec first (what csu_lib.notebook_runner does for papermill)
            "JUPYTER_PATH": os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"),
                                             *filter(None, [os.environ.get("JUPYTER_PATH")])]),
            "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]), "IPYTHONDIR": str(dirs["ipython"]),
            "JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1",
        })
        env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the widget's figure
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.user_settings_dir={dirs['settings']}", f"--LabApp.workspaces_dir={dirs['workspaces']}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=",
               "--LabApp.extension_manager=readonly", "--MappingKernelManager.default_kernel_name=python3",
               "--ServerApp.allow_root=True"]  # CI containers run as root
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyter lab did not answer within {SERVER_START_S} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Shut the kernels and the server down (REST API, then signals), and end any process it
        started that is left (kernels run in sessions of their own)."""
        if self.proc is None:
            return
        import psutil

        try:
            started = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            started = []
        if self.proc.poll() is None:
            try:
                self.api("shutdown", method="POST")
            except (OSError, urllib.error.URLError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        for child in started:
            try:
                child.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(started, timeout=10)
        for child in alive:
            try:
                child.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=10)
        if self._log is not None:
            self._log.close()
        self.proc = None


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def explorer_runs(tmp_path_factory):
    """Complete smoke-size run records of two conditions (clean, san 50%) x BCE and CSU, one
    epoch each: what the explorer browses. Trained in this process (tests/conftest.py isolates
    data and cache)."""
    require_browser()  # skip before training when the test cannot run
    from csu_lib.study import grid, run_all

    runs = tmp_path_factory.mktemp("browser_runs") / "study"
    configs = grid("smoke", conditions=["none", "san:0.5"], losses=["bce", "csu"], epochs=1, device="cpu")
    run_all(configs, runs, progress=False)
    return runs


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_browser()
    base = tmp_path_factory.mktemp("jupyterlab")
    (base / "root").mkdir()
    server = LabServer(base / "root", base / "home")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def explorer_notebook(root: Path, runs: Path, fig_dir: Path) -> str:
    """notebooks/explorer.ipynb with its parameters injected (papermill, not executed) in
    ``root``; returns its name."""
    import papermill as pm

    name = "explorer_browser.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "explorer.ipynb"), str(root / name), prepare_only=True,
                        parameters={"runs_dir": str(runs), "fig_dir": str(fig_dir), "show_widgets": True},
                        kernel_name="python3", progress_bar=False)
    return name


# -- the explorer in JupyterLab ----------------------------------------------------------------

#: JavaScript on the page: the notebook panel JupyterLab shows (window.jupyterapp: expose_app_in_browser).
_PANEL = "window.jupyterapp.shell.currentWidget"
#: The figure (inline PNG) and the summary table the explorer widget's Output area holds now.
_WIDGET_STATE = """() => {
    const out = document.querySelector('.jp-Notebook .widget-output');
    if (!out) return null;
    const img = out.querySelector('img');
    const table = out.querySelector('table');
    return {img: img ? img.getAttribute('src') : null, table: table ? table.innerText : null, text: out.innerText};
}"""


def _kernel_idle(page, timeout_s: float) -> None:
    page.wait_for_function(f"() => {_PANEL}.sessionContext.session?.kernel?.status === 'idle'",
                           timeout=timeout_s * 1000, polling=200)


def _widget_state(page) -> dict:
    return page.evaluate(_WIDGET_STATE)


def _wait_for_figure(page) -> None:
    """Wait until the explorer widget shows its first figure (fail saying what it shows instead)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.locator(".jp-Notebook .widget-output img").first.wait_for(state="visible", timeout=REDRAW_S * 1000)
        return
    except PlaywrightTimeout:
        pass
    now = _widget_state(page)
    shown = "no explorer widget output in the page" if now is None else f"its output shows {now['text'][:300]!r}"
    pytest.fail(f"the explorer widget drew no figure within {REDRAW_S} s after the notebook ran ({shown})",
                pytrace=False)


_N_IMAGES = "() => document.querySelectorAll('.jp-Notebook .widget-output img').length"
#: Python run in the notebook's kernel (not in a cell): the explorer widget's dropdown values, the
#: open matplotlib figures and the outputs its Output widget holds.
_KERNEL_PROBE = (
    "import matplotlib.pyplot as _plt\n"
    "_w = [v for v in Out.values() if hasattr(v, 'children')][-1]\n"
    "print([b.value for r in _w.children[:2] for b in r.children], 'figures', _plt.get_fignums(), "
    "'outputs', [o.get('output_type') for o in _w.children[2].outputs])")


def _kernel_side(page) -> str:
    """What the kernel holds (see _KERNEL_PROBE), for a failure message."""
    try:
        return page.evaluate(f"""async code => {{
            const future = {_PANEL}.sessionContext.session.kernel.requestExecute({{code, silent: false, store_history: false}});
            let text = '';
            future.onIOPub = msg => {{ if (msg.header.msg_type === 'stream') text += msg.content.text;
                                        if (msg.header.msg_type === 'error') text += msg.content.ename + ': ' + msg.content.evalue; }};
            await future.done;
            return text.trim();
        }}""", _KERNEL_PROBE)
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        return f"(not readable: {exc})"


def _settle(page, quiet_s: float = 2.0) -> None:
    """Wait until the kernel is idle and the widget's output has not changed for ``quiet_s``: the
    frontend has applied every update of the last redraw (on a loaded machine it lags behind the
    kernel), so the next dropdown change is a user's change, not one racing a re-render."""
    deadline = time.monotonic() + REDRAW_S
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        _kernel_idle(page, REDRAW_S)
        state = _widget_state(page)
        if state != last:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        page.wait_for_timeout(250)


def _dropdown(page, label: str):
    """The <select> of the explorer's dropdown labelled ``label``."""
    box = page.locator(".jp-Notebook .widget-dropdown").filter(has=page.get_by_text(label, exact=True))
    assert box.count() == 1, f"expected one {label!r} dropdown in the widget, found {box.count()}"
    return box.locator("select")


def _shown(page, label: str) -> str:
    """The value the dropdown labelled ``label`` shows (its <option> value: the option's text,
    whose spaces ipywidgets renders as no-break spaces)."""
    return _dropdown(page, label).evaluate("s => s.selectedIndex < 0 ? null : s.options[s.selectedIndex].value")


#: Share of non-white pixels below which an explorer figure counts as blank. Measured: a smoke
#: view draws ~15% of its pixels, four empty panels with their ticks ~1.6%, a white figure with
#: only its title 0.06% (the blank redraws of the threading bug in csu_lib/explorer.py).
MIN_INK = 0.05


def _ink(src: str) -> float:
    """Share of the pixels of a ``data:image/png;base64,`` image that are not near-white."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("L"))
    return float((pixels < 240).mean())


def _select(page, label: str, value: str | None = None) -> tuple[str, str, dict]:
    """Pick ``value`` (None: another option) in a dropdown and wait until the widget's figure is
    redrawn (its image changes); returns (old value, new value, the widget's state after)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    _settle(page)
    before = _widget_state(page)
    select = _dropdown(page, label)
    old = _shown(page, label)
    options = select.evaluate("s => [...s.options].map(o => o.value)")
    others = [o for o in options if o != old]
    assert others, f"the {label} dropdown offers only {options}: nothing to change to"
    new = others[-1] if value is None else value
    assert new in others, f"{new!r} is not another option of the {label} dropdown: {options}"
    select.select_option(value=new)
    try:
        page.wait_for_function(
            f"old => {{ const s = ({_WIDGET_STATE})(); return s && s.img && s.img !== old; }}",
            arg=before["img"], timeout=REDRAW_S * 1000, polling=250)
    except PlaywrightTimeout:
        now = _widget_state(page) or {}
        pytest.fail(f"the explorer did not redraw its figure within {REDRAW_S} s after the {label} dropdown "
                    f"changed {old!r} -> {new!r} (table unchanged: {now.get('table') == before['table']}; images "
                    f"in the output: {page.evaluate(_N_IMAGES)}; in the kernel: {_kernel_side(page)}; widget output "
                    f"text now: {str(now.get('text'))[:300]!r})", pytrace=False)
    _settle(page)  # the redraw (and anything it set off) finished
    after = _widget_state(page)
    assert _shown(page, label) == new, \
        f"the {label} dropdown shows {_shown(page, label)!r} after the redraw, not the selected {new!r}"
    assert after["img"] and after["img"].startswith("data:image/png;base64,"), after
    assert after["img"] != before["img"], f"the figure went back to the previous one after {label} {old!r} -> {new!r}"
    ink = _ink(after["img"])
    assert ink > MIN_INK, f"the figure after {label} {old!r} -> {new!r} is blank ({ink:.1%} of its pixels drawn)"
    return old, new, after


def _notebook_selection(page) -> dict:
    """The selection the notebook printed (``selection: {...}``, its second code cell)."""
    texts = page.evaluate(f"""() => {{
        const cells = {_PANEL}.content.model.cells, texts = [];
        for (let i = 0; i < cells.length; i++)
            for (const o of cells.get(i).toJSON().outputs || [])
                if (o.output_type === 'stream') texts.push(Array.isArray(o.text) ? o.text.join('') : o.text);
        return texts;
    }}""")
    for line in "".join(texts).splitlines():
        if line.startswith("selection: "):
            return ast.literal_eval(line[len("selection: "):])
    raise AssertionError(f"the notebook printed no 'selection:' line: {texts}")


def _error_outputs(page) -> list[str]:
    """Error outputs of the notebook: in its model (what a save writes) and in the page (also the
    widget's Output area, whose outputs the notebook model does not hold)."""
    model = page.evaluate(f"""() => {{
        const cells = {_PANEL}.content.model.cells;
        const found = [];
        for (let i = 0; i < cells.length; i++) {{
            const cell = cells.get(i);
            if (cell.type !== 'code') continue;
            for (const o of cell.toJSON().outputs || []) {{
                if (o.output_type === 'error') found.push(`cell ${{i}}: ${{o.ename}}: ${{o.evalue}}`);
                if (o.output_type === 'stream' && o.name === 'stderr' && /Traceback|\\w+(Error|Exception)\\b/.test(String(o.text)))
                    found.push(`cell ${{i}} stderr: ${{String(o.text).slice(0, 300)}}`);
            }}
        }}
        return found;
    }}""")
    dom = page.evaluate("""() => [...document.querySelectorAll(
        '.jp-Notebook [data-mime-type="application/vnd.jupyter.error"], .jp-Notebook [data-mime-type="application/vnd.jupyter.stderr"]')]
        .map(e => e.innerText).filter(t => /Traceback|\\w+(Error|Exception)\\b/.test(t)).map(t => t.slice(0, 300))""")
    return model + [f"page: {t}" for t in dom]


def test_explorer_dropdowns_redraw_in_jupyterlab(explorer_runs, lab, tmp_path):
    name = explorer_notebook(lab.root, explorer_runs, tmp_path / "figures")
    shots = artifact_dir("explorer_jupyterlab")
    with browser_page(viewport=(1400, 1000), timeout_ms=60_000) as page:
        try:
            page.goto(lab.url(f"lab/tree/{name}"), wait_until="domcontentloaded")
            page.wait_for_function(f"() => window.jupyterapp && {_PANEL} && {_PANEL}.sessionContext",
                                   timeout=SERVER_START_S * 1000, polling=250)
            page.evaluate(f"async () => {{ await {_PANEL}.context.ready; await {_PANEL}.sessionContext.ready; }}")
            kernel = page.evaluate(f"() => {_PANEL}.sessionContext.session?.kernel?.name")
            assert kernel == "python3", f"the notebook's kernel is {kernel!r}, not this venv's python3"
            _kernel_idle(page, KERNEL_READY_S)

            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            n_code = page.evaluate(f"() => {_PANEL}.content.widgets.filter(c => c.model.type === 'code').length")
            # done: the kernel idle with every code cell run, or a cell failed (run-all stops there)
            page.wait_for_function(
                f"""() => {_PANEL}.sessionContext.session?.kernel?.status === 'idle' && (
                    {_PANEL}.content.widgets.filter(c => c.model.type === 'code')
                        .every(c => c.model.executionCount !== null && c.model.executionCount > 0)
                    || {_PANEL}.content.widgets.some(c => c.model.type === 'code'
                        && (c.model.toJSON().outputs || []).some(o => o.output_type === 'error')))""",
                timeout=RUN_ALL_S * 1000, polling=500)
            errors = _error_outputs(page)
            assert not errors, f"cells of the explorer notebook failed: {errors}"

            # the widget: five dropdowns and the drawn default selection
            _wait_for_figure(page)
            labels = page.locator(".jp-Notebook .widget-dropdown label").all_inner_texts()
            assert labels == ["study", "condition", "backbone", "method", "class"], labels
            selection = _notebook_selection(page)
            shown = {key: _shown(page, key.replace("_name", "")) for key in selection}
            assert shown == selection, f"the widget opened at {shown}, not at the notebook's selection {selection}"
            first = _widget_state(page)
            assert first["img"].startswith("data:image/png;base64,") and first["table"], first
            assert "csu" in first["table"] and "bce" in first["table"], first["table"]

            assert _ink(first["img"]) > MIN_INK, "the widget's first figure is blank"

            # condition, then class, then the class back: each redraws; the way back draws the
            # same figure as before (the same selection, the same bytes)
            _, new_condition, after_condition = _select(page, "condition")
            assert after_condition["table"] and after_condition["table"] != first["table"], \
                f"the summary table did not change with the condition ({new_condition})"
            old_class, new_class, after_class = _select(page, "class")
            assert after_class["table"], after_class
            assert _shown(page, "condition") == new_condition, "the condition changed with the class"
            _, _, back = _select(page, "class", old_class)
            assert back["img"] == after_condition["img"] and back["table"] == after_condition["table"], \
                f"{new_condition} / {old_class} drew another figure or table the second time"

            errors = _error_outputs(page)
            assert not errors, f"error outputs in the notebook: {errors}"
            print(f"{n_code} code cells ran; redrawn for condition={new_condition!r}, class={new_class!r} and back; "
                  f"console: {page.csu_errors}")
        except BaseException:
            with contextlib.suppress(Exception):  # the state it failed in, without hiding the failure
                _screenshot_widget(page, shots / "final.png")
            raise
        _screenshot_widget(page, shots / "final.png")
        # JupyterLab itself may log console errors (e.g. a missing optional service); uncaught
        # exceptions are failures
        page_errors = [e for e in page.csu_errors if e.startswith("page error")]
        assert not page_errors, page_errors


def _screenshot_widget(page, path: Path) -> None:
    widget = page.locator(".jp-Notebook .widget-output")
    if widget.count():
        widget.first.scroll_into_view_if_needed(timeout=5_000)
    page.screenshot(path=path)


# -- a plotly HTML figure ----------------------------------------------------------------------

_CAMERA = "() => JSON.stringify(document.querySelector('.js-plotly-plot')._fullLayout.scene.camera)"


def test_plotly_html_renders_and_rotates(tmp_path):
    require_browser()
    import numpy as np

    from csu_lib import plots
    from csu_lib.report import figure_files

    grid = np.linspace(-1, 1, 9)
    surface = np.add.outer(grid ** 2, 0.5 * grid ** 2) + 0.1 * np.sin(3 * np.add.outer(grid, grid))
    fig = plots.plotly_landscape_2d(grid, grid, surface, title="browser test surface")
    path = figure_files.save_plotly(fig, "landscape_2d_3d", tmp_path)
    shots = artifact_dir("plotly_html")
    with browser_page(viewport=(900, 700)) as page:
        page.goto(path.as_uri())
        page.wait_for_selector(".js-plotly-plot .main-svg", state="attached")
        page.wait_for_selector(".js-plotly-plot .gl-container canvas", state="attached")
        page.wait_for_function("() => document.querySelector('.js-plotly-plot')._fullLayout?.scene?._scene?.glplot")
        assert page.locator(".js-plotly-plot text.gtitle").text_content() == "browser test surface"
        assert "WebGL is not supported" not in page.inner_text("body")
        page.evaluate("""() => { window.__relayouts = [];
            document.querySelector('.js-plotly-plot').on('plotly_relayout', e => window.__relayouts.push(e)); }""")
        camera = json.loads(page.evaluate(_CAMERA))
        scene = page.locator(".js-plotly-plot .gl-container canvas").first.bounding_box()
        assert scene and scene["width"] > 200 and scene["height"] > 200, scene
        clip = {"x": scene["x"] + scene["width"] * 0.2, "y": scene["y"] + scene["height"] * 0.2,
                "width": scene["width"] * 0.6, "height": scene["height"] * 0.6}
        before = page.screenshot(clip=clip)

        # rotate: drag across the scene
        x, y = scene["x"] + scene["width"] / 2, scene["y"] + scene["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + 150, y + 60, steps=2)  # few steps: each re-renders the scene in software GL (slow)
        page.mouse.up()
        page.wait_for_function("() => window.__relayouts.some(e => 'scene.camera' in e)", timeout=10_000)
        rotated = json.loads(page.evaluate(_CAMERA))
        assert rotated["eye"] != camera["eye"], (camera, rotated)
        page.wait_for_function(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
        after = page.screenshot(clip=clip)
        assert after != before, "the 3-D scene looks the same after the camera turned"
        page.screenshot(path=shots / "final.png")
        assert not page.csu_errors, page.csu_errors
