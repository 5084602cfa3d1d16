"""Check a sampling loop you wrote against a reference, step by step (notebooks 02–06).

The convention. A *sampler function* is any function

    fn(model, schedule, x_T, noises) -> x_0

- ``model``: ``model(x_t, t, labels=None) -> ε̂`` (:mod:`diffusion_lib.model_api`), called
  at least once per step;
- ``schedule``: the :class:`~diffusion_lib.schedule.NoiseSchedule` the model was trained with;
- ``x_T``: the start, (B, ...);
- ``noises``: (S, B, ...) standard normal draws, one per step: ``noises[i]`` is the z of the
  step that starts at index i of the schedule the loop walks (i = t for all T steps), so
  a loop ``for t in reversed(range(T))`` uses ``noises[t]``; a step that adds no noise
  (DDPM's last, t = 0) leaves its z unused;
- it returns the final sample x_0, (B, ...), nothing else.

The loop does not have to hand back its intermediate x_t: :func:`trace_sampler` watches the
model calls instead. Every call's input (x_t, t) is recorded, so the *trajectory* of a run
is x_T, then the input of every later call, then the returned x_0. Two loops agree when
they call the model at the same timesteps with the same x_t and return the same x_0;
:func:`compare_samplers` finds the first step where they do not and says by how much.

Calls are reduced to steps in two ways, so that loops written differently still line up:
a call with a 2B batch keeps its first B rows (batched classifier-free guidance sends
cat([x_t, x_t])), and a call with the same t and x_t as the call before it is merged
into it (two-pass guidance calls the model twice per step).

Example:
    >>> from diffusion_lib.lessons.checker import compare_samplers, library_sampler
    >>> report = compare_samplers(my_sampler, library_sampler(), model, schedule,
    ...                           x_T, noises)                       # doctest: +SKIP
    >>> print(report)                                                # doctest: +SKIP
    your loop matches the library bit for bit at every one of 1000 steps (t = 999 … 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..sampling.loop import sample
from ..schedule import NoiseSchedule

__all__ = [
    "Comparison",
    "SamplerFn",
    "Trajectory",
    "compare_samplers",
    "library_sampler",
    "trace_sampler",
]

SamplerFn = Callable[[Any, NoiseSchedule, Tensor, Tensor], Tensor]
"""``fn(model, schedule, x_T, noises) -> x_0``; see the module docstring."""


@dataclass(frozen=True)
class Trajectory:
    """One run of a sampler function, as its model calls saw it.

    ``ts[k]`` and ``xs[k]`` are the timesteps (B,) and the input x_t (B, ...) of step k
    (k = 0 first, the noisiest); ``final`` is the returned x_0 (B, ...).
    """

    ts: list[Tensor]
    xs: list[Tensor]
    final: Tensor
    name: str

    @property
    def states(self) -> list[Tensor]:
        """x_T, the output of every step but the last, and x_0: (S + 1) tensors (B, ...)."""
        return [*self.xs, self.final]


@dataclass(frozen=True)
class Comparison:
    """The verdict of :func:`compare_samplers`; ``str()`` is a one-paragraph summary.

    Step k is the k-th model call (k = 0 first); its *output* is the next call's input x_t,
    or x_0 after the last step.
    """

    matches: bool
    """Same timesteps, same number of steps, and every output within ``atol``."""
    message: str
    """What ``str()`` prints."""
    steps: int
    """Steps compared: the steps both runs took, before any timestep disagreed."""
    step_diffs: Tensor
    """(steps,) the largest |difference| of each step's output, float64."""
    max_abs_diff: float
    """The largest |difference| over every compared output (0.0: bit for bit)."""
    first_step: int | None = None
    """The first step whose output differs by more than ``atol`` (or whose t differs)."""
    first_t: int | None = None
    """That step's timestep (of the sample with the largest difference)."""
    sample: int | None = None
    """The batch index with the largest difference at ``first_step``."""
    first_diff: float = 0.0
    """The largest |difference| at ``first_step``."""

    def __str__(self) -> str:
        return self.message


class _Recorder(nn.Module):
    """Wraps a model: records each call's (t, x_t) and returns the model's ε̂ unchanged.

    Attributes the library reads (``null_label``, ``num_timesteps``, …) come from the model.
    """

    def __init__(self, model: Any, batch: int) -> None:
        super().__init__()
        self.inner = model
        self.batch = batch
        self.ts: list[Tensor] = []
        self.xs: list[Tensor] = []

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        b = self.batch
        x = x_t[:b] if x_t.shape[0] == 2 * b else x_t  # batched guidance: cat([x_t, x_t])
        tt = torch.as_tensor(t).reshape(-1)
        tt = (tt[:b] if tt.shape[0] == 2 * b else tt.expand(x.shape[0])).detach().cpu()
        repeat = bool(self.ts) and torch.equal(self.ts[-1], tt) and torch.equal(self.xs[-1], x)
        if not repeat:  # two-pass guidance: a second call on the same (x_t, t) is one step
            self.ts.append(tt.clone())
            self.xs.append(x.detach().clone())
        return self.inner(x_t, t, labels)


def trace_sampler(
    fn: SamplerFn,
    model: Any,
    schedule: NoiseSchedule,
    x_T: Tensor,
    noises: Tensor,
    name: str | None = None,
) -> Trajectory:
    """Run ``fn(model, schedule, x_T, noises)`` once (no gradients) and record its trajectory.

    Args:
        fn: a sampler function (module docstring).
        model: the ε̂ model; ``fn`` gets it wrapped so that every call is recorded.
        schedule: the model's training schedule.
        x_T: (B, ...), passed as a copy (a loop that writes into it cannot change the
            reference's start).
        noises: (S, B, ...), likewise.
        name: how messages call this run (default: the function's name).

    Returns:
        the :class:`Trajectory`: t and x_t at every step, and the returned x_0.
    """
    recorder = _Recorder(model, x_T.shape[0])
    with torch.no_grad():
        out = fn(recorder, schedule, x_T.clone(), noises.clone())
    if not isinstance(out, Tensor) or out.shape != x_T.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"{_name(fn, name)} returned {got}; a sampler function returns the final x_0 of "
            f"x_T's shape {tuple(x_T.shape)} (the checker records the steps itself)"
        )
    if not recorder.xs:
        raise ValueError(f"{_name(fn, name)} never called the model")
    return Trajectory(recorder.ts, recorder.xs, out.detach().clone(), _name(fn, name))


def library_sampler(sampler: str = "ddpm", **options: Any) -> SamplerFn:
    """The library's :func:`~diffusion_lib.sampling.loop.sample` as a sampler function.

    ``options`` go to ``sample`` (e.g. ``variance="beta"``, ``x0_mode="none"``,
    ``steps=50``, ``labels=…``, ``guidance_scale=3.0``). The library's k-th step (k = 0
    first) is at schedule index S − 1 − k and takes its z from ``noises[S − 1 − k]``, the
    convention of the module docstring (S = ``len(noises)``, the number of steps).
    """

    def the_library(model: Any, schedule: NoiseSchedule, x_T: Tensor, noises: Tensor) -> Tensor:
        last = len(noises) - 1
        return sample(
            model,
            schedule,
            tuple(x_T.shape),
            sampler=sampler,
            x_T=x_T,
            step_noise=lambda k: noises[last - k],
            progress=False,
            **options,
        )

    the_library.label = "the library"  # type: ignore[attr-defined]
    return the_library


def compare_samplers(
    learner: SamplerFn | Trajectory,
    reference: SamplerFn | Trajectory,
    model: Any,
    schedule: NoiseSchedule,
    x_T: Tensor,
    noises: Tensor,
    *,
    atol: float = 0.0,
    learner_name: str = "your loop",
) -> Comparison:
    """Run two sampler functions on the same x_T and z's and compare them step by step.

    Args:
        learner: the loop under test, or a :class:`Trajectory` recorded earlier.
        reference: what it should equal, e.g. :func:`library_sampler` ``(...)``, or a
            recorded :class:`Trajectory` (to compare many loops with one reference run).
        model: the ε̂ model both run with.
        schedule: the model's training schedule.
        x_T: (B, ...) the common start.
        noises: (S, B, ...) the common z's (module docstring: ``noises[i]`` is the z of the
            step at schedule index i).
        atol: the largest |difference| that still counts as equal; 0.0 (the default)
            asks for bit-for-bit equality.
        learner_name: how the message calls ``learner``.

    Returns:
        a :class:`Comparison`. Its message says either "matches … at every one of S steps"
        (bit for bit, or to the largest difference seen), or where the runs part: the first
        step whose output differs by more than ``atol``, its t, the largest |difference|
        there and at which sample, and how large the difference grows; or the first step
        whose timestep differs; or that one run took more steps than the other.
    """
    mine = _traced(learner, model, schedule, x_T, noises, learner_name)
    ref = _traced(reference, model, schedule, x_T, noises, None)
    return _compare(mine, ref, atol)


def _traced(
    fn: SamplerFn | Trajectory,
    model: Any,
    schedule: NoiseSchedule,
    x_T: Tensor,
    noises: Tensor,
    name: str | None,
) -> Trajectory:
    if isinstance(fn, Trajectory):
        return fn
    return trace_sampler(fn, model, schedule, x_T, noises, name)


def _name(fn: object, name: str | None) -> str:
    return name or getattr(fn, "label", None) or getattr(fn, "__name__", None) or repr(fn)


def _t_range(ts: list[Tensor]) -> str:
    first, last = int(ts[0][0]), int(ts[-1][0])
    return f"t = {first}" if len(ts) == 1 else f"t = {first} … {last}"


def _outputs(run: Trajectory, steps: int) -> list[Tensor]:
    """The output of each of the first ``steps`` steps: the next call's input, or x_0."""
    return [run.xs[k + 1] if k + 1 < len(run.xs) else run.final for k in range(steps)]


def _abs_diff(m: Tensor, r: Tensor) -> Tensor:
    """|m − r| in float64; 0 where both hold the same value (NaN and inf included), inf where
    only one is NaN."""
    m, r = m.double(), r.double()
    same = (m == r) | (m.isnan() & r.isnan())
    return torch.where(same, 0.0, torch.nan_to_num((m - r).abs(), nan=math.inf))


def _compare(mine: Trajectory, ref: Trajectory, atol: float) -> Comparison:
    """Walk both trajectories from x_T; stop at the first disagreement in t."""
    a, b = mine.name, ref.name
    if mine.xs[0].shape != ref.xs[0].shape:
        raise ValueError(f"{a} and {b} ran on batches of different shapes")
    n_mine, n_ref = len(mine.xs), len(ref.xs)
    common = min(n_mine, n_ref)
    t_clash = next((k for k in range(common) if not torch.equal(mine.ts[k], ref.ts[k])), None)
    steps = common if t_clash is None else t_clash
    diffs = [
        _abs_diff(m, r) for m, r in zip(_outputs(mine, steps), _outputs(ref, steps), strict=True)
    ]
    step_diffs = torch.tensor([d.max().item() for d in diffs], dtype=torch.float64)
    worst = float(step_diffs.max()) if steps else 0.0
    over = torch.nonzero(step_diffs > atol)
    first = int(over[0]) if len(over) else None
    same = "bit for bit" if worst == 0 else f"to {worst:.3g}"
    counts = (
        f" ({a} takes {n_mine} steps, {b} {n_ref}.)" if n_mine != n_ref and t_clash is None else ""
    )

    start = _abs_diff(mine.xs[0], ref.xs[0]).max().item()
    if start > atol:
        msg = (
            f"{a} starts from a different x_T than {b} (largest |difference| {start:.3g}): "
            "does it write into x_T, or draw its own?"
        )
        return Comparison(False, msg, 0, step_diffs[:0], start, 0, int(mine.ts[0][0]), None, start)
    if first is not None:
        d = diffs[first]
        sample = int(d.reshape(d.shape[0], -1).amax(1).argmax())
        t = int(mine.ts[first][sample])
        is_last = first + 1 == n_mine and first + 1 == n_ref
        msg = (
            f"{a} first differs from {b} at step {first} (t = {t}), in "
            + ("the returned x_0" if is_last else "the x it hands to the next step")
            + f": largest |difference| {step_diffs[first]:.3g}, at sample {sample}"
            + (f" (all earlier steps within atol = {atol:g})" if atol > 0 and first > 0 else "")
        )
        if steps - first > 1:
            k_max = int(step_diffs[first:].argmax()) + first
            msg += (
                f"; it grows to {step_diffs[k_max]:.3g} (step {k_max}, t = "
                f"{int(mine.ts[k_max][0])}) and is {step_diffs[-1]:.3g} after the last step"
            )
        msg += "." + counts
        return Comparison(
            False, msg, steps, step_diffs, worst, first, t, sample, float(step_diffs[first])
        )
    if t_clash is not None:
        ta, tb = int(mine.ts[t_clash][0]), int(ref.ts[t_clash][0])
        if t_clash == 0:
            agreed = "it is the first step."
        elif t_clash == 1:
            agreed = f"the step before it matches {same}."
        else:
            agreed = f"the {t_clash} steps before it match {same}."
        msg = f"at step {t_clash} {a} calls the model at t = {ta}, {b} at t = {tb}; {agreed}"
        return Comparison(False, msg, steps, step_diffs, worst, t_clash, ta)
    if n_mine != n_ref:
        more, fewer = (a, b) if n_mine > n_ref else (b, a)
        extra = _t_range((mine if n_mine > n_ref else ref).ts[common:])
        final = _abs_diff(mine.final, ref.final).max().item()
        msg = (
            f"{more} takes {max(n_mine, n_ref)} steps, {fewer} {common}: {more} also steps at "
            f"{extra}. The {common} steps both take match {same}; the returned x_0 differ by "
            f"up to {final:.3g}."
        )
        return Comparison(False, msg, steps, step_diffs, max(worst, final), common)
    range_ = _t_range(mine.ts)
    if worst == 0:
        msg = f"{a} matches {b} bit for bit at every one of {steps} steps ({range_})."
    else:
        k_max = int(step_diffs.argmax())
        msg = (
            f"{a} matches {b} to {worst:.3g} at every one of {steps} steps ({range_}; largest "
            f"at step {k_max}, t = {int(mine.ts[k_max][0])}), within atol = {atol:g}."
        )
    return Comparison(True, msg, steps, step_diffs, worst)
