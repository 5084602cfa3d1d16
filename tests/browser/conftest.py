"""Fixtures for the browser test: one JupyterLab and one headless Chromium per session.

Environment (all optional):
    BROWSER_TEST_NOTEBOOKS    folder of NN_*.ipynb to test instead of notebooks/ (development)
    BROWSER_TEST_SCREENSHOTS  where screenshots go (default build/browser-screenshots/)
    CHROMIUM_PATH             the Chromium binary (default /usr/bin/chromium)
    BROWSER_TEST_RUN_TIMEOUT  seconds one notebook's Run All may take (default 600)
    BROWSER_TEST_SETTLE       seconds a scrubber may take to show a new frame (default 60)
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from .lab import JupyterLabServer, copy_notebooks

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Hermetic: only the local JupyterLab resolves (the Colab badge and the like do not load).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
INSTALL_HINT = (
    "The browser test needs Debian's chromium and Playwright for Python: run `make setup` "
    "as root (it installs both), or `sudo apt-get install -y chromium` and "
    "`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install -e '.[dev]'`; "
    "set CHROMIUM_PATH if chromium lives elsewhere. Deselect with `-m 'not browser'`."
)

# Filled by the tests, printed at the end of the run (CI keeps the names in its log).
SCREENSHOTS: list[Path] = []
TIMINGS: list[tuple[str, float]] = []
# monotonic clock: when the lab fixture began starting JupyterLab, when the last test ended
CLOCK: dict[str, float] = {}


def notebook_dir() -> Path:
    return Path(os.environ.get("BROWSER_TEST_NOTEBOOKS") or ROOT / "notebooks").resolve()


def screenshot_dir() -> Path:
    return Path(
        os.environ.get("BROWSER_TEST_SCREENSHOTS") or ROOT / "build" / "browser-screenshots"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: end-to-end test of the notebooks in JupyterLab with headless Chromium"
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not (SCREENSHOTS or TIMINGS):
        return
    tr = terminalreporter
    tr.section("browser test")
    for name, seconds in TIMINGS:
        tr.write_line(f"{name}: {seconds:.1f} s in JupyterLab")
    if "start" in CLOCK and "end" in CLOCK:
        wall = CLOCK["end"] - CLOCK["start"]
        tr.write_line(f"browser test wall time (JupyterLab start to last notebook): {wall:.1f} s")
    tr.write_line(f"screenshots ({len(SCREENSHOTS)}) in {screenshot_dir().resolve()}:")
    for path in SCREENSHOTS:
        tr.write_line(f"  {path.name}")


@pytest.fixture(scope="session")
def shots() -> Path:
    """A fresh screenshot folder for this run."""
    folder = screenshot_dir()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
    if not Path(path).is_file():
        found = shutil.which("chromium")
        if not found:
            pytest.fail(f"chromium not found at {path} nor on PATH. {INSTALL_HINT}", pytrace=False)
        path = found
    return path


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """JupyterLab serving a copy of the notebooks, stopped at the end whatever happens."""
    CLOCK["start"] = time.monotonic()
    home = tmp_path_factory.mktemp("jupyterlab")
    root = home / "notebooks"
    copy_notebooks(notebook_dir(), root, NOTEBOOK_GLOB)
    with JupyterLabServer(root_dir=root, home=home) as server:
        yield server
    # after the server stopped: its log, for a failure's post-mortem
    print(f"JupyterLab log: {server.log_path}")


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        pytest.fail(f"Playwright for Python is missing ({err}). {INSTALL_HINT}", pytrace=False)
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(
                executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        except Exception as err:  # a broken install must fail loudly, never skip
            pytest.fail(f"could not start {chromium_path}: {err}\n{INSTALL_HINT}", pytrace=False)
        try:
            yield chromium
        finally:
            chromium.close()
