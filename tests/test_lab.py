"""`make lab` works for whoever runs it: root included, headless included.

The test runs ``tools/lab.sh``, the very command ``make lab`` runs, on a free port with no
display, waits for the URL with its token, asks the server for its status with that token,
and stops it. This machine runs the tests as root, which ``jupyter lab`` refuses without
``--allow-root``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
URL = re.compile(r"(http://(?:127\.0\.0\.1|localhost):(\d+)/lab\?token=([0-9a-f]+))")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_runs_tools_lab_sh():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^lab:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "tools/lab.sh" in recipe


def test_lab_starts_headless_and_prints_its_token_url(tmp_path):
    if importlib.util.find_spec("jupyterlab") is None and not os.environ.get("CI"):
        # the GPU image of benchmarks/cuda_check.sh has no JupyterLab; CI always has it
        pytest.skip("JupyterLab is not installed here (pip install -e '.[dev]')")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(
        VENV=str(Path(sys.executable).parents[1]),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
    )
    port = _free_port()
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["sh", "tools/lab.sh", "--port", str(port), "--ServerApp.port_retries=0"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        match = None
        while match is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            match = URL.search(log.read_text(errors="replace"))
        text = log.read_text(errors="replace")
        assert match is not None, f"no token URL within 60 s (exit {proc.poll()}):\n{text}"
        assert int(match.group(2)) == port
        status_url = f"http://127.0.0.1:{port}/api/status?token={match.group(3)}"
        with urllib.request.urlopen(status_url, timeout=10) as response:
            assert "started" in json.load(response)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
