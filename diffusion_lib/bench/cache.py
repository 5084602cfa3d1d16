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

The file survives a crash at any moment: each row is appended as one whole line in one
``write`` (after a newline of its own when a killed or disk-full write left the last
line unfinished), so a cut line never swallows the next row; a line that is cut, not
UTF-8, not JSON, or not a ``{"key": {…}, "row": {…}}`` object is skipped, with one
warning per cache. The path is checked when the cache is made (a directory, a FIFO or
a path that cannot be written is refused before any measuring).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import check_writable_dir, file_kind, read_regular

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
            raise TypeError(
                f"cannot fingerprint {type(obj).__name__}; valid: an nn.Module, "
                "a tensor, or a schedule with alphas_cumprod"
            )
        for name, tensor in tensors:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class CacheWarning(UserWarning):
    """Lines of a table cache were skipped (cut short, not UTF-8, not a row)."""


def check_cache_path(path: str | Path) -> Path:
    """Check that ``path`` can be a cache file: a regular file (or absent) that can be
    written, in a directory that exists or can be made. Creates nothing.

    Raises:
        ValueError: one line naming the path and what is wrong.
    """
    if str(path).strip() == "" or Path(path).name in ("", ".", ".."):
        raise ValueError(
            f"the table cache {str(path)!r} is not a file name; give e.g. "
            "runs/table_cache.jsonl, or none"
        )
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # the directory check below names it
        mode = None
    except OSError as err:
        raise ValueError(f"cannot use {path} as the table cache: {err.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise ValueError(f"the table cache {path} is {file_kind(mode)}, not a regular file")
    check_writable_dir(path.parent, "directory of the table cache")
    if mode is not None and not os.access(path, os.W_OK):
        raise ValueError(f"the table cache {path} is not writable")
    return path


class TableCache:
    """Per-seed rows in a JSON-lines file (one ``{"key": …, "row": …}`` object per line).

    Every :meth:`get` re-reads the file, so two processes sharing one cache see each
    other's rows (each :meth:`put` appends one whole line in one write). ``path=None``
    gives a cache that stores nothing.

    Raises:
        ValueError: ``path`` is a directory, a FIFO, or cannot be written
            (:func:`check_cache_path`).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else check_cache_path(path)
        self._warned = False

    @staticmethod
    def _full(key: dict[str, Any]) -> dict[str, Any]:
        return {**key, "source": source_hash()}

    def _entries(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return {}
        try:
            data = read_regular(self.path, "table cache")
        except FileNotFoundError:
            return {}
        entries, bad = {}, 0
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                item = json.loads(raw.decode("utf-8"))
                key, row = item["key"], item["row"]
                if not (isinstance(key, dict) and isinstance(row, dict)):
                    raise TypeError
                entries[json.dumps(key, sort_keys=True)] = row
            except (ValueError, TypeError, KeyError, RecursionError):
                bad += 1  # cut by a kill or a full disk, or not a row of this cache
        if bad and not self._warned:
            self._warned = True
            warnings.warn(
                f"table cache {self.path}: skipped {bad} unreadable line(s) (cut "
                "short, not UTF-8 or not a row); their rows are measured again",
                CacheWarning,
                stacklevel=3,
            )
        return entries

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The row stored under ``key`` by the same library sources, or None."""
        return self._entries().get(json.dumps(self._full(key), sort_keys=True))

    def put(self, key: dict[str, Any], row: dict[str, Any]) -> None:
        """Append ``row`` under ``key`` (with the current source hash)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps({"key": self._full(key), "row": row}) + "\n").encode()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(self.path, flags, 0o666)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(
                    f"the table cache {self.path} is {file_kind(info.st_mode)}, not a regular file"
                )
            # a line left unfinished (a kill, a full disk) must not swallow this one
            if info.st_size and os.pread(fd, 1, info.st_size - 1) != b"\n":
                line = b"\n" + line
            written = os.write(fd, line)  # one write: whole lines, even with other writers
            if written != len(line):
                raise OSError(
                    f"table cache {self.path}: only {written} of {len(line)} bytes "
                    "of a row were written (disk full?)"
                )
        finally:
            os.close(fd)

    def measure(self, key: dict[str, Any], run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The row stored under ``key``; else ``run()``'s row, stored under it first."""
        row = self.get(key)
        if row is None:
            row = run()
            self.put(key, row)
        return row
