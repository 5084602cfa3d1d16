"""Start and stop an isolated JupyterLab for the browser test.

Everything the server reads or writes lives under one temporary folder: a copy
of the notebooks (so autosave can never write back into the checkout), the
Jupyter config, data, runtime and IPython dirs, and a JupyterLab settings dir
with the news popup, update checks and autosave off. The server runs in its own
process group and is stopped by that id; kernels (which jupyter_client starts
in sessions of their own) are found by their connection files in our private
runtime dir and stopped by process id too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# JupyterLab user settings for the test: {plugin id: {setting: value}}.
LAB_SETTINGS: dict[str, dict] = {
    # No "Would you like to get notified about official Jupyter news?" toast over outputs,
    # and nothing that reaches out to the internet.
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
    # Every cell in the DOM (the default windowing renders offscreen cells lazily), and
    # no kernel-picker dialog for a notebook without kernelspec metadata.
    "@jupyterlab/notebook-extension:tracker": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
}


# Talk to 127.0.0.1 directly even where http_proxy is set.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_notebooks(src: Path, dst: Path, pattern: str) -> list[str]:
    """Copy ``src`` (the notebooks and whatever sits beside them) to ``dst``.

    Returns the names of the notebooks matching ``pattern``, sorted.
    """
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return sorted(p.name for p in dst.glob(pattern))


def write_lab_settings(settings_dir: Path) -> None:
    for plugin_id, values in LAB_SETTINGS.items():
        package, plugin = plugin_id.split(":")
        path = settings_dir / package / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if pytest itself is killed (Linux only)."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class JupyterLabServer:
    """``jupyter lab`` on 127.0.0.1:<free port>, no token, rooted at ``root_dir``.

    Use as a context manager; :meth:`stop` runs on the way out whatever happened.
    """

    def __init__(self, root_dir: Path, home: Path, python: str = sys.executable) -> None:
        self.root_dir = root_dir
        self.home = home
        self.python = python
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "jupyterlab.log"
        self.runtime_dir = home / "runtime"
        self.proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ start
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        dirs = {
            "JUPYTER_CONFIG_DIR": self.home / "config",
            "JUPYTER_DATA_DIR": self.home / "data",  # kernelspecs still come from sys.prefix
            "JUPYTER_RUNTIME_DIR": self.runtime_dir,
            "JUPYTERLAB_SETTINGS_DIR": self.home / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.home / "lab-workspaces",
            "IPYTHONDIR": self.home / "ipython",
            "MPLCONFIGDIR": self.home / "matplotlib",
        }
        for name, path in dirs.items():
            path.mkdir(parents=True, exist_ok=True)
            env[name] = str(path)
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_TOKEN", None)
        env["PYTHONUNBUFFERED"] = "1"
        write_lab_settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
        return env

    def command(self) -> list[str]:
        cmd = [
            self.python, "-m", "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.terminals_enabled=False",
            "--expose-app-in-browser",  # window.jupyterapp, to read cell outputs and state
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        return cmd

    def start(self, timeout: float = 90.0, tries: int = 3) -> None:
        env = self.env()
        for attempt in range(tries):
            if self._start(env, timeout):
                return
            if "already in use" not in self.log_tail() or attempt == tries - 1:
                break
            self.port = free_port()  # someone took our free port in between: another one
            self.url = f"http://127.0.0.1:{self.port}"
        raise RuntimeError(
            f"JupyterLab exited with {self.proc.returncode} before it served:\n" + self.log_tail()
        )

    def _start(self, env: dict[str, str], timeout: float) -> bool:
        """Start the server; True once it answers, False if it exited first."""
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(), cwd=self.root_dir, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with _NO_PROXY.open(f"{self.url}/api/status", timeout=5) as r:
                    if r.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"JupyterLab did not answer on {self.url} in {timeout:.0f} s:\n" + self.log_tail()
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ stop
    def kernel_pids(self) -> list[int]:
        """Processes whose command line names a connection file in our runtime dir."""
        pids = []
        marker = str(self.runtime_dir)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
        return pids

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the server's process group (it shuts its kernels down), then SIGKILL."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the server's pid
        if self.proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # anything left in the group
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        if Path("/proc").is_dir():
            for pid in self.kernel_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> JupyterLabServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
