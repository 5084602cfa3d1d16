"""Every notebook in a real JupyterLab, driven by headless Chromium (docs/browser-test.md).

For each ``notebooks/NN_*.ipynb`` (found by glob, run on a temporary copy):
open it, Run All, wait until the kernel is idle, and fail on any error output
or widget that did not render. For each timestep scrubber on the page, move
the slider with the keyboard to several frames, check that the label's t and
the image's bytes change with it, and screenshot each frame.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import CLOCK, NOTEBOOK_GLOB, SCREENSHOTS, TIMINGS, notebook_dir

pytestmark = pytest.mark.browser

HELPERS_JS = Path(__file__).with_name("helpers.js")
SCRUBBER_IN_SOURCE = "TimestepScrubber"
T_RE = re.compile(r"\bt = (\d+)")
HANDLE = ".timestep-scrubber-slider .noUi-handle, .timestep-scrubber-slider .ui-slider-handle"
# tall enough that a whole scrubber (its image is scaled to the cell width) fits on screen
VIEWPORT = {"width": 1400, "height": 1800}
# Timeouts (ms): generous for 2 busy cores, but every wait is bounded.
OPEN_MS = 90_000
KERNEL_MS = 120_000
WIDGET_MS = 60_000
SETTLE_S = float(os.environ.get("BROWSER_TEST_SETTLE", "60"))


def run_timeout_ms() -> int:
    return int(float(os.environ.get("BROWSER_TEST_RUN_TIMEOUT", "600")) * 1000)


NOTEBOOKS = sorted(p.name for p in notebook_dir().glob(NOTEBOOK_GLOB))


def test_there_are_notebooks_to_open():
    assert NOTEBOOKS, f"no {NOTEBOOK_GLOB} in {notebook_dir()}"


def uses_scrubber(path: Path) -> bool:
    """Whether a code cell of the notebook mentions the scrubber class."""
    cells = json.loads(path.read_text())["cells"]
    return any(
        c["cell_type"] == "code" and SCRUBBER_IN_SOURCE in "".join(c["source"]) for c in cells
    )


# ------------------------------------------------------------------ page helpers
class Lab:
    """One notebook open in one page."""

    def __init__(self, page, name: str, shots: Path) -> None:
        self.page = page
        self.name = name
        self.stem = Path(name).stem
        self.shots = shots
        self.problems: list[str] = []  # console and page errors, for failure messages

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def wait(self, expression: str, arg, timeout_ms: int, what: str, polling: int = 250):
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            return self.page.wait_for_function(
                expression, arg=arg, timeout=timeout_ms, polling=polling
            )
        except PlaywrightTimeout:
            shot = self.screenshot("TIMEOUT")
            pytest.fail(
                f"{self.name}: timed out after {timeout_ms / 1000:.0f} s waiting for {what}.\n"
                f"kernel: {self.kernel_status()}\nstate: {self.safe_state()}\n"
                f"page errors: {self.problems[-10:]}\nscreenshot: {shot}",
                pytrace=False,
            )

    def kernel_status(self) -> str:
        try:
            return self.js("p => window.__e2e.kernelStatus(p)", self.name)
        except Exception as err:  # diagnostics only
            return f"unknown ({err})"

    def safe_state(self):
        try:
            return self.js("p => window.__e2e.state(p)", self.name)
        except Exception as err:  # diagnostics only
            return f"unknown ({err})"

    def screenshot(self, tag: str, locator=None) -> Path:
        path = self.shots / f"{self.stem}-{tag}.png"
        try:
            (locator or self.page).screenshot(path=str(path))
        except Exception as err:  # a failed screenshot must not hide the real failure
            print(f"screenshot {path.name} failed: {err}")
            return path
        SCREENSHOTS.append(path)
        return path

    def kernel_idle(self, timeout_ms: int = KERNEL_MS) -> None:
        self.wait("p => window.__e2e.kernelReady(p)", self.name, timeout_ms, "an idle kernel")

    def image_sha(self, k: int) -> str | None:
        """SHA-256 of the bytes the k-th scrubber's <img> shows, or None while it has none."""
        b64 = self.js(
            """async (k) => {
                const s = window.__e2e.scrubber(k);
                if (!s || !s.src) return null;
                const ctl = new AbortController();
                const timer = setTimeout(() => ctl.abort(), 10000);  // evaluate has no timeout
                try {
                    const r = await fetch(s.src, {signal: ctl.signal});
                    const bytes = new Uint8Array(await r.arrayBuffer());
                    let text = "";
                    for (let i = 0; i < bytes.length; i += 0x8000) {
                        text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
                    }
                    return btoa(text);
                } catch (e) {
                    return null;
                } finally {
                    clearTimeout(timer);
                }
            }""",
            k,
        )
        if not b64:
            return None
        data = base64.b64decode(b64)
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), "the scrubber image is not a PNG"
        return hashlib.sha256(data).hexdigest()

    def settle(self, k: int, value: int, previous: tuple[int, str] | None) -> tuple[int, str]:
        """Wait until scrubber ``k`` shows slider ``value`` with a label and image that
        the kernel has finished sending (the image lags the label until the kernel is idle
        again), and that differ from ``previous`` (t, image hash). Returns (t, image hash)."""
        self.wait(
            "([k, v]) => { const s = window.__e2e.scrubber(k); return s && s.value === v; }",
            [k, value], WIDGET_MS, f"scrubber {k + 1}'s slider to reach {value}",
        )  # fmt: skip
        deadline = time.monotonic() + SETTLE_S
        last = None
        while time.monotonic() < deadline:
            self.kernel_idle()
            s = self.js("k => window.__e2e.scrubber(k)", k)
            m = T_RE.search(s["label"] or "")
            seen = (int(m.group(1)) if m else None, self.image_sha(k), s["value"])
            changed = previous is None or (seen[0] != previous[0] and seen[1] != previous[1])
            if seen == last and seen[0] is not None and seen[1] and changed:
                return seen[0], seen[1]
            last = seen
            time.sleep(0.5)
        shot = self.screenshot(f"scrubber{k + 1}-STUCK")
        pytest.fail(
            f"{self.name}: scrubber {k + 1} at step {value} did not settle on a new frame in "
            f"{SETTLE_S:.0f} s: last seen (t, image sha, value) = {last}, before = {previous}; "
            f"screenshot {shot}",
            pytrace=False,
        )


# ------------------------------------------------------------------ the test
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_in_jupyterlab(name: str, lab, browser, shots: Path) -> None:
    started = time.monotonic()
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.add_init_script(path=str(HELPERS_JS))
    page = context.new_page()
    page.set_default_timeout(30_000)
    nb = Lab(page, name, shots)
    page.on("console", lambda m: m.type == "error" and nb.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: nb.problems.append(f"pageerror: {e}"))
    try:
        # Open the notebook in a fresh workspace and wait for its kernel to finish starting.
        page.goto(f"{lab.url}/lab/tree/{quote(name)}?reset", wait_until="domcontentloaded",
                  timeout=OPEN_MS)  # fmt: skip
        nb.wait("p => window.__e2e.panel(p) !== null", name, OPEN_MS, "the notebook to open")
        nb.kernel_idle()

        # Run All, as the learner would from the Run menu.
        nb.js(
            """p => {
                const app = window.jupyterapp;
                app.shell.activateById(window.__e2e.panel(p).id);
                void app.commands.execute("notebook:run-all-cells");  // awaited below, bounded
                return true;
            }""",
            name,
        )
        nb.wait("p => window.__e2e.runFinished(p)", name, run_timeout_ms(), "Run All to finish",
                polling=500)  # fmt: skip
        time.sleep(1.0)  # and still finished a moment later (no queued cell started since)
        nb.wait("p => window.__e2e.runFinished(p)", name, KERNEL_MS, "Run All to finish")
        state = nb.js("p => window.__e2e.state(p)", name)
        plots = page.locator(".jp-OutputArea .jp-RenderedImage")
        if plots.count():  # show a person the first plot the run drew, not the last cell
            plots.first.scroll_into_view_if_needed()
        nb.screenshot("run-all")

        assert state["kernel"] != "dead", f"{name}: the kernel died during Run All"
        errors = [f"cell {c['index']}: {e}" for c in state["cells"] for e in c["errors"]]
        assert not errors, f"{name}: error output after Run All:\n" + "\n".join(errors)
        shown = [f"cell {c['index']}: {e}" for c in state["cells"] for e in c["shownErrors"]]
        assert not shown, f"{name}: outputs failed to display:\n" + "\n".join(shown)
        not_run = [c["index"] for c in state["cells"] if c["executionCount"] is None]
        assert not not_run, f"{name}: cells {not_run} did not run"

        # The scrubbers: every one on the page must follow its slider.
        if uses_scrubber(notebook_dir() / name):
            nb.wait("() => window.__e2e.scrubbers() > 0", None, WIDGET_MS,
                    "a timestep scrubber to render")  # fmt: skip
        count = nb.js("() => window.__e2e.scrubbers()")
        for k in range(count):
            check_scrubber(nb, k)
        print(f"{name}: {count} scrubber(s) checked")
    finally:
        try:  # shut the kernel down (bounded), then drop the page
            nb.js("p => { const w = window.__e2e.panel(p); if (w) void w.sessionContext.shutdown();"
                  " return true; }", name)  # fmt: skip
            page.wait_for_function(
                "p => { const w = window.__e2e.panel(p);"
                " return !w || !w.sessionContext.session; }",
                arg=name, timeout=15_000,
            )  # fmt: skip
        except Exception as err:  # the server's shutdown kills what is left
            print(f"{name}: kernel shutdown from the page failed: {err}")
        context.close()
        TIMINGS.append((name, time.monotonic() - started))
        CLOCK["end"] = time.monotonic()


def check_scrubber(nb: Lab, k: int) -> None:
    """Move scrubber ``k`` to ≥ 3 frames by keyboard; label t and image must change each time."""
    root = nb.page.locator(".timestep-scrubber").nth(k)
    root.scroll_into_view_if_needed()
    handle = root.locator(HANDLE).first
    s = nb.js("k => window.__e2e.scrubber(k)", k)
    assert s["label"] and T_RE.search(s["label"]), f"scrubber {k + 1}: no 't = …' label: {s}"
    assert s["max"] is not None and s["value"] is not None, f"scrubber {k + 1}: no slider: {s}"
    first, last = int(s["min"]), int(s["max"])
    assert last - first >= 2, f"scrubber {k + 1}: fewer than 3 frames ({s})"

    handle.focus()
    if s["value"] != first:
        handle.press("Home")
    seen = [(first, *nb.settle(k, first, None))]
    nb.screenshot(f"scrubber{k + 1}-step{first:02d}-t{seen[-1][1]}", root)

    middle = (first + last) // 2
    moves = [("ArrowRight", middle - first, middle), ("End", 1, last)]
    if last - 1 != middle:
        moves.append(("ArrowLeft", 1, last - 1))
    for key, times, target in moves:
        handle.focus()
        for _ in range(times):
            handle.press(key)
        t, sha = nb.settle(k, target, seen[-1][1:])
        seen.append((target, t, sha))
        nb.screenshot(f"scrubber{k + 1}-step{target:02d}-t{t}", root)

    by_step = sorted(seen)
    ts = [t for _, t, _ in by_step]
    assert len({t for _, t, _ in seen}) == len(seen), f"scrubber {k + 1}: repeated t: {seen}"
    assert len({h for *_, h in seen}) == len(seen), f"scrubber {k + 1}: repeated image: {seen}"
    # frames run noisiest first: t falls as the slider moves right
    assert ts == sorted(ts, reverse=True), f"scrubber {k + 1}: t does not fall along the slider"
