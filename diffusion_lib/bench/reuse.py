"""Reuse a committed table's per-seed measurements, each row checked by measuring it again.

A committed table (``diffusion_lib/results/*.json``) stores every row's per-seed values
(``fd_seeds``, ``accuracy_seeds``, …). Adding a row, or a column derived from the rows,
should not cost the hours the table took; but a stored number may only be reused if today's
code still produces it. :class:`CommittedSeeds` gives a table's stored per-seed values
for a (row, seed); :func:`~diffusion_lib.bench.sweeps.sampler_grid` and
:func:`~diffusion_lib.bench.sweeps.guidance_sweep` then measure the row's first stored
seed again and reuse the other seeds only when that one agrees to 1e-6 (FD, accuracy,
diversity: the samples are per-sample seeded, so the same code gives the same digits).
A row that disagrees is measured again on every seed, with a line saying so. Wall
seconds are not compared (they are the one column a machine changes).
"""

from __future__ import annotations

import math
import sys
from dataclasses import fields
from typing import Any

from ..sampling import SamplerSpec

# the per-seed columns a table row stores as ``<key>_seeds``
_PER_SEED = ("seconds", "fd", "accuracy", "diversity", "saturated")
# the columns that must agree for a stored seed to be reused
_COMPARED = ("fd", "accuracy", "diversity", "saturated")
# columns that are the same every seed (they depend on n and the class balance only)
_SHARED = ("fd_floor", "fd_sd", "fd_floor_sd", "diversity_real")


def json_safe(value: Any) -> Any:
    """An infinite float (``s_tmax``'s default) as None, so a row is standard JSON."""
    return None if isinstance(value, float) and math.isinf(value) else value


_SPEC_DEFAULTS = {f.name: json_safe(f.default) for f in fields(SamplerSpec)}


class CommittedSeeds:
    """The per-seed measurements of a committed table's rows, for reuse.

    Args:
        rows: the table's rows (``payload["rows"]``), each with ``seeds`` and
            ``<column>_seeds`` lists.
        n: samples per row and seed the new table measures; rows of another n are ignored.
    """

    def __init__(self, rows: list[dict[str, Any]], n: int) -> None:
        self.rows = [r for r in rows if r.get("n") == n and len(r.get("seeds") or ()) >= 1]
        self.mismatches: list[str] = []

    @classmethod
    def from_payload(
        cls, payload: dict[str, Any] | None, n: int, **must_match: Any
    ) -> CommittedSeeds | None:
        """From a committed payload, or None when there is none or its ``must_match``
        fields (e.g. ``guidance_scale``) differ from the new table's."""
        if payload is None or any(payload.get(k) != v for k, v in must_match.items()):
            return None
        return cls(payload["rows"], n)

    def lookup(self, match: dict[str, Any], seed: int) -> dict[str, Any] | None:
        """The stored columns of ``seed`` in the row whose fields equal ``match``, or None.

        A field a stored row lacks (a row written before the field existed) counts as
        the :class:`~diffusion_lib.sampling.SamplerSpec` default.
        """
        for row in self.rows:
            if seed not in row["seeds"]:
                continue
            if all(row.get(k, _SPEC_DEFAULTS.get(k)) == v for k, v in match.items()):
                i = row["seeds"].index(seed)
                stored = {k: row[k] for k in _SHARED if k in row}
                for key in _PER_SEED:
                    if f"{key}_seeds" in row:
                        stored[key] = row[f"{key}_seeds"][i]
                    elif key in row and len(row["seeds"]) == 1:
                        stored[key] = row[key]
                return stored
        return None

    def agrees(self, label: str, seed: int, stored: dict[str, Any], fresh: dict[str, Any]) -> bool:
        """Whether a measurement made again equals the stored one (to 1e-6); a line on
        stderr and a note in :attr:`mismatches` when not."""
        for key in _COMPARED:
            a, b = stored.get(key), fresh.get(key)
            if a is None:  # a column the committed table did not measure
                continue
            if b is None or not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9):
                note = (
                    f"{label}: seed {seed} {key} was {a!r} in the committed table, measured "
                    f"again {b!r}: measuring every seed of this row again"
                )
                print(note, file=sys.stderr)
                self.mismatches.append(note)
                return False
        return True


def measure_row(
    label: str,
    seeds: list[int],
    measure: Any,
    reuse: CommittedSeeds | None,
    match: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[int]]:
    """Per-seed measurements of one row, reusing stored seeds after the check.

    ``measure(seed)`` measures one seed. Returns (the k measurements in ``seeds`` order,
    the seeds whose values were taken from the committed table).
    """
    stored = [reuse.lookup(match, s) if reuse is not None else None for s in seeds]
    first = next((i for i, m in enumerate(stored) if m is not None), None)
    out: list[dict[str, Any] | None] = [None] * len(seeds)
    if first is not None:
        out[first] = measure(seeds[first])
        if reuse.agrees(label, seeds[first], stored[first], out[first]):  # type: ignore[union-attr]
            # a column the committed row lacks is left out of the fresh seed too, so the
            # row's columns are those of all its seeds
            missing = [k for k in _PER_SEED if stored[first].get(k) is None]  # type: ignore[union-attr]
            out[first] = {k: (None if k in missing else v) for k, v in out[first].items()}
            # keep the committed numbers (they agree to 1e-6): tables sharing a row stay equal
            out[first].update({k: v for k, v in stored[first].items() if k in _COMPARED})  # type: ignore[union-attr]
        else:
            stored = [None] * len(seeds)
    reused = []
    for i, s in enumerate(seeds):
        if out[i] is None:
            if stored[i] is not None:
                out[i] = stored[i]
                reused.append(s)
            else:
                out[i] = measure(s)
    return out, reused  # type: ignore[return-value]
