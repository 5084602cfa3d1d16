"""A disk cache of per-seed measurements, so the long tables in ``benchmarks/`` resume.

A committed table (``benchmarks/samplers.py``, ``benchmarks/quality.py``) is built from
one measurement per (setting, seed); a DDPM-1000 row costs minutes per seed on a CPU. The
:class:`TableCache` stores each measurement as one JSON line the moment it is made, under
a key that names everything the number depends on:

- the sampler setting, n, the seed, the guidance scale, conditional or not, the device
  type (a GPU's arithmetic gives other samples than a CPU's);
- a fingerprint of the model's and the classifier's weights and of the schedule's ᾱ;
- a hash of the library's source files (:func:`source_hash`), so a measurement made by
  other sampler or metric code is never reused.

So an interrupted table picks up where it stopped, a table with more seeds computes only
the new ones, and two tables that share a row (the quality bars and the samplers table
both measure guided DDPM-1000) compute it once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

_LIBRARY = Path(__file__).resolve().parents[1]  # the diffusion_lib package


@lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 (first 16 hex digits) of every ``.py`` file of the package, read once per process.

    Read once, so a long run keeps the hash of the code it imported even if a file is
    edited while it runs.
    """
    digest = hashlib.sha256()
    for path in sorted(_LIBRARY.rglob("*.py")):
        digest.update(path.relative_to(_LIBRARY).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(*objects: Any) -> str:
    """sha256 (first 16 hex digits) of the tensors of modules, tensors or schedules.

    A module contributes its ``state_dict``; a schedule its ``alphas_cumprod``; a tensor
    itself. Two models with equal weights have equal fingerprints.
    """
    digest = hashlib.sha256()
    for obj in objects:
        if isinstance(obj, nn.Module):
            tensors = [(k, v) for k, v in sorted(obj.state_dict().items())]
        elif isinstance(obj, torch.Tensor):
            tensors = [("tensor", obj)]
        elif hasattr(obj, "alphas_cumprod"):
            tensors = [("alphas_cumprod", obj.alphas_cumprod)]
        else:
            raise TypeError(f"cannot fingerprint {type(obj).__name__}; valid: an nn.Module, "
                            "a tensor, or a schedule with alphas_cumprod")
        for name, tensor in tensors:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class TableCache:
    """Per-seed rows in a JSON-lines file (one ``{"key": …, "row": …}`` object per line).

    Every :meth:`get` re-reads the file, so two processes sharing one cache see each
    other's rows (each :meth:`put` appends one line in one write). ``path=None`` gives a
    cache that stores nothing.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)

    @staticmethod
    def _full(key: dict[str, Any]) -> dict[str, Any]:
        return {**key, "source": source_hash()}

    def _entries(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return {}
        entries = {}
        for line in self.path.read_text().splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:  # a line cut by an interrupted write
                continue
            entries[json.dumps(item["key"], sort_keys=True)] = item["row"]
        return entries

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The row stored under ``key`` by the same library sources, or None."""
        return self._entries().get(json.dumps(self._full(key), sort_keys=True))

    def put(self, key: dict[str, Any], row: dict[str, Any]) -> None:
        """Append ``row`` under ``key`` (with the current source hash)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": self._full(key), "row": row})
        with self.path.open("a") as f:
            f.write(line + "\n")

    def measure(self, key: dict[str, Any], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The row stored under ``key``; else ``run()``'s row, stored under it first."""
        row = self.get(key)
        if row is None:
            row = run()
            self.put(key, row)
        return row
