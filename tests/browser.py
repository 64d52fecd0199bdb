"""Helpers of the real-browser tests (``@pytest.mark.browser``): headless Chromium driven by
Playwright for Python.

They need a Chromium binary and the ``playwright`` package (the ``dev`` extra); Playwright's own
browser download (``playwright install``) is not used: Chromium is the system's
(``apt-get install chromium``) or the one ``$CSU_CHROMIUM`` names. Without them the tests are
skipped with a message saying how to enable them, unless ``CSU_REQUIRE_BROWSER=1`` (set by
.ci/run), where they fail instead, so that a broken install cannot pass silently.

Usage::

    from tests.browser import artifact_dir, browser_page, require_browser

    def test_page():
        require_browser()
        with browser_page() as page:
            page.goto(url)
            ...
            page.screenshot(path=artifact_dir("my_test") / "final.png")
        # page.csu_errors: the console errors and uncaught page errors seen while it was open
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Chromium's flags here: headless as root on a machine without network access or GPU (the
#: background services otherwise try to connect and log refused connections), with software
#: WebGL (SwiftShader), which plotly's 3-D scenes need.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
)

HOW_TO_ENABLE = ("to run the browser tests install Chromium and Playwright for Python: `apt-get install chromium` "
                 "and `pip install playwright` (in the dev extra: `pip install -e .[notebooks,dev]`; no "
                 "`playwright install` needed), or set CSU_CHROMIUM to a Chromium/Chrome binary")


def chromium_path() -> Optional[str]:
    """The Chromium binary: ``$CSU_CHROMIUM`` if set (even when it does not exist, so it can
    simulate a machine without one), else /usr/bin/chromium, else ``chromium`` on PATH."""
    override = os.environ.get("CSU_CHROMIUM")
    if override:
        return override if os.path.isfile(override) and os.access(override, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def require_browser() -> str:
    """Skip the calling test unless Chromium and Playwright are available (fail instead when
    ``CSU_REQUIRE_BROWSER=1``); returns the Chromium path."""
    missing = []
    path = chromium_path()
    if path is None:
        where = os.environ.get("CSU_CHROMIUM")
        missing.append(f"no Chromium binary ({'CSU_CHROMIUM=' + where + ' is not executable' if where else 'neither /usr/bin/chromium nor chromium on PATH'})")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package is not installed")
    if missing:
        message = f"{'; '.join(missing)}: {HOW_TO_ENABLE}"
        if os.environ.get("CSU_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CSU_REQUIRE_BROWSER=1 but {message}", pytrace=False)
        pytest.skip(message)
    return path


def artifact_dir(name: str) -> Path:
    """``<repo>/test-output/browser/<name>/`` (created; git-ignored): where a browser test writes
    its screenshots."""
    path = ROOT / "test-output" / "browser" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def browser_page(viewport: tuple[int, int] = (1400, 1000), *, extra_args: Sequence[str] = (),
                 timeout_ms: float = 30_000) -> Iterator["object"]:
    """A Playwright (sync API) ``Page`` in a fresh headless Chromium; everything is closed on exit.

    ``page.csu_errors`` (a list of strings) collects the console messages of type ``error`` and
    the uncaught exceptions of the page while it is open. ``timeout_ms``: Playwright's default
    timeout of the page's actions and waits.
    """
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=[*CHROMIUM_ARGS, *extra_args])
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text} ({msg.location})")
                    if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.csu_errors = errors
            yield page
        finally:
            browser.close()


def check_report(index: Path, screenshot: Optional[Path] = None) -> int:
    """Open a figure report (``csu figures``' index.html) from disk in Chromium and check that every
    image decodes, that there is a complete section (reading, runs, >= 2 key numbers, the notebook
    and its parameters) for every PNG beside it, that the interactive plotly figure draws when the
    report has one, and that the page logs no error; returns the number of figures."""
    require_browser()
    pngs = sorted(p.stem for p in index.parent.glob("*.png"))
    assert pngs, f"no PNG beside {index}"
    with browser_page() as page:
        page.goto(index.resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("""() => Array.from(document.images).map(
            img => ({alt: img.alt, ok: img.complete && img.naturalWidth > 0}))""")
        assert len(images) == len(pngs) and all(i["ok"] for i in images), [i for i in images if not i["ok"]]
        sections = page.evaluate("""() => Array.from(document.querySelectorAll('section.figure')).map(s => ({
            name: s.dataset.figure, reading: !!s.querySelector('.reading'), runs: !!s.querySelector('.runs'),
            numbers: s.querySelectorAll('table.numbers tr').length, madeBy: s.querySelector('.made-by').textContent}))""")
        assert sorted(s["name"] for s in sections) == pngs
        incomplete = [s for s in sections if not (s["reading"] and s["runs"] and s["numbers"] >= 2
                                                  and "with parameters" in s["madeBy"])]
        assert not incomplete, incomplete
        if (index.parent / "landscape_2d.plotly.json").exists():
            page.wait_for_selector("#plotly-landscape_2d .main-svg")
            assert page.evaluate("() => document.getElementById('plotly-landscape_2d').data[0].type") == "surface"
        assert page.csu_errors == []
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=False)
    return len(pngs)
