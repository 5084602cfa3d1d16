#!/bin/sh
# `make lab`: JupyterLab on notebooks/, for whoever runs it.
#   - as root (a container, a cloud VM) it passes --allow-root, which Jupyter demands there;
#   - with no display to open a browser on (ssh, a container) it passes --no-browser; either
#     way Jupyter prints the URL with its token ("http://127.0.0.1:8888/lab?token=...").
# Extra arguments go to `jupyter lab` (tests/test_lab.py runs this script with --port).
set -eu
VENV="${VENV:-.venv}"
set -- notebooks/ "$@"
if [ "$(id -u)" = 0 ]; then
    set -- --allow-root "$@"
fi
if [ "$(uname -s)" != Darwin ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    set -- --no-browser "$@"
fi
exec "$VENV/bin/jupyter" lab "$@"
