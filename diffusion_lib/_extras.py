"""Optional dependencies: a module that needs an extra says which one to install.

``pip install diffusion_lib`` brings torch, numpy and tqdm: enough for ``import
diffusion_lib`` and :func:`~diffusion_lib.sample`. The rest comes with extras
(pyproject.toml): ``[lessons]`` (matplotlib, ipywidgets), ``[metrics]`` (scikit-learn,
safetensors), ``[cli]`` (pillow, safetensors). A module that needs one imports it as

    with extra("lessons"):
        import matplotlib.pyplot as plt

so that, without it, the error names the extra instead of a bare missing module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def extra(name: str) -> Iterator[None]:
    """Imports in this block come with ``pip install "diffusion_lib[name]"``: say so if missing."""
    try:
        yield
    except ModuleNotFoundError as err:
        if not err.name or err.name.partition(".")[0] == "diffusion_lib":
            raise
        raise ModuleNotFoundError(
            f"No module named {err.name!r}: it comes with diffusion_lib's [{name}] extra, "
            f'pip install "diffusion_lib[{name}]" (in a clone: pip install -e ".[{name}]")',
            name=err.name,
        ) from err
