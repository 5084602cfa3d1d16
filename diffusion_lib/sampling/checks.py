"""Input checks of the sampling loop, and its per-step finite check.

Each turns a bad argument into one ``TypeError``/``ValueError`` that names the
argument and what is valid (see ``tests/test_sampling_api.py``), before anything
is drawn or allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..device import model_device, resolve_device, usable_device
from ..model_api import null_label_of
from .noise import SampleNoise


def check_choice(name: str, value: object, valid: Sequence[str]) -> None:
    """Raise ``ValueError`` naming ``value`` and the valid choices when it is not one of them."""
    if not isinstance(value, str) or value not in valid:
        raise ValueError(
            f"unknown {name} {value!r}; valid values are {', '.join(map(repr, valid))}"
        )


def check_steps(steps: object, num_timesteps: int) -> int:
    """``steps`` as an int in [1, T], or a ``TypeError``/``ValueError`` saying why not."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int or None, got {type(steps).__name__} {steps!r}")
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be between 1 and T = {num_timesteps}, got {steps}")
    return int(steps)


def check_first_timestep(first: int, num_timesteps: int, steps: int, spacing: str) -> None:
    """Refuse a plan whose first (noisiest) timestep lies below the middle of [0, T − 1].

    The sampler starts from x_T ~ N(0, I); at a t where ᾱ_t > ᾱ_{(T−1)/2}, x_t is mostly
    signal, so that start is not a sample of q(x_t) and the output is noise. Only
    ``"leading"`` with ``steps=1`` (t = 0, for T ≥ 2) gets here: leading's first timestep
    (n − 1)·⌊T/n⌋ is at least (T − 1)/2 for every n ≥ 2 (write T = qn + r, 0 ≤ r < n:
    2(n − 1)q − (T − 1) = q(n − 2) − r + 1 ≥ (n − 2) − (n − 1) + 1 = 0), and
    ``"linspace"``/``"trailing"`` always start at T − 1.
    """
    T = int(num_timesteps)
    if 2 * first < T - 1:
        why = " (leading's first is (steps − 1)·(T // steps))" if spacing == "leading" else ""
        raise ValueError(
            f"steps={steps} with spacing={spacing!r} would start sampling at t = {first}{why}, "
            f"below the middle of [0, {T - 1}]: there x_t is mostly signal, so starting it "
            f"from x_T ~ N(0, I) returns noise. Use spacing='trailing' or "
            f"spacing='linspace' (both start at T − 1 = {T - 1})"
        )


StepNoise = Tensor | Sequence[Tensor] | Callable[[int], Tensor]
"""Per-step noise from outside: one z (B, ...) per step that adds noise, in order,
as a tensor (S_noisy, B, ...) or a sequence, or a callable ``index -> z``."""


def as_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, torch.Size)):
        raise TypeError(
            f"shape must be a sequence (B, ...) such as (16, 1, 8, 8), got "
            f"{type(shape).__name__} {shape!r}"
        )
    dims = tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"shape must hold ints, got {dims!r}")
    if len(dims) < 2 or min(dims) < 1:
        raise ValueError(f"shape must be (B, ...) with every size >= 1, got {dims}")
    return tuple(int(d) for d in dims)


def as_labels(
    labels: Tensor | Sequence[int] | int | None, batch: int, model: object, device: torch.device
) -> Tensor | None:
    if labels is None:
        return None
    null_label = null_label_of(model)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if null_label is None and num_classes < 1:
        raise ValueError(
            "labels were given but the model is unconditional (it has no `null_label` and "
            "no `num_classes`)"
        )
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        y = torch.full((batch,), int(labels), dtype=torch.long)
    elif isinstance(labels, (str, bytes, float, bool)) or isinstance(labels, np.floating):
        raise TypeError(
            f"labels must be an int or a sequence/tensor of B ints, got "
            f"{type(labels).__name__} {labels!r}"
        )
    else:
        try:
            y = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"labels must be an int or a sequence/tensor of B ints, got {labels!r}"
            ) from err
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise TypeError(f"labels must be integers, got dtype {y.dtype}")
        y = y.long().reshape(-1)
    if y.shape[0] != batch:
        raise ValueError(
            f"got {y.shape[0]} labels for a batch of {batch}; pass one label per sample"
        )
    lo, hi = int(y.min()), int(y.max())
    if null_label is None:  # conditional without a null label (e.g. a diffusers UNet)
        if lo < 0 or hi > num_classes - 1:
            raise ValueError(
                f"labels must lie in [0, {num_classes - 1}] (the model's {num_classes} "
                f"classes; it has no null label); got min {lo}, max {hi}"
            )
    elif lo < 0 or hi > null_label:
        raise ValueError(
            f"labels must lie in [0, {null_label}] (0..{null_label - 1} are classes, "
            f"{null_label} is the null label); got min {lo}, max {hi}"
        )
    return y.to(device)


def check_device(model: object, device: torch.device | str | None) -> torch.device:
    """The device to sample on: the model's, or ``device`` when it agrees with the model's."""
    on = model_device(model)
    if device is None:
        if on.type == "meta":
            raise ValueError(
                "the model's weights are on the meta device: they hold no data (a model built "
                "under torch.device('meta') or not loaded yet); load its weights "
                "(model.to_empty(device='cpu') and load_state_dict) before sampling"
            )
        return on
    dev = resolve_device(device)
    if dev.type != "meta":  # meta (no data) is kept for tests that trace the loop
        dev = usable_device(dev)
    has_params = isinstance(model, torch.nn.Module) and any(True for _ in model.parameters())
    same = dev.type == on.type and (dev.index is None or on.index is None or dev.index == on.index)
    if has_params and not same:
        raise ValueError(
            f"device={str(dev)!r} was asked but the model's weights are on {on}; move the "
            f"model first (model.to({str(dev)!r})) or leave device=None to sample on {on}"
        )
    return dev


class FiniteWatch:
    """Finds the first step whose model output is NaN/inf, and which t it was at.

    On a CPU it checks at once (and stops the loop there). Elsewhere it keeps the
    first bad t in a device buffer (no host sync per step, CUDA-graph safe) and
    :meth:`check` reads it once at the end.
    """

    def __init__(self, device: torch.device, timesteps: np.ndarray, visit: Sequence[int]) -> None:
        self.eager = device.type == "cpu"
        self.bad = None if self.eager else torch.full((), -1, dtype=torch.long, device=device)
        self.order = {int(timesteps[i]): k for k, i in enumerate(visit)}
        self.total = len(visit)

    def _fail(self, t: int) -> None:
        raise FloatingPointError(
            f"the model returned NaN/inf at step {self.order.get(t, '?')} of {self.total} "
            f"(t = {t}); every step before it was finite. Check the model (weights, "
            "precision: try fp32) and its inputs"
        )

    def update(self, eps: Tensor, t: Tensor, parts: tuple[Tensor | None, ...] = ()) -> None:
        """``eps`` (B, ...) of the step at original timestep ``t`` (a (B,) tensor).

        ``parts``: the model's own outputs under guidance (ε(c), ε(∅)); when they are
        finite but the guided ``eps`` is not, the guidance scale is named (on a CPU).
        """
        # ε̂·0 is ±0 where ε̂ is finite and NaN where it is not, so its sum is NaN exactly when
        # some value is NaN/inf: two passes over ε̂ (torch.isfinite(eps).all() takes five)
        probe = (eps * 0).sum()
        if self.eager:
            if float(probe) != 0.0:
                t0 = int(t[0])
                given = [p for p in parts if p is not None]
                if given and all(bool(torch.isfinite(p).all()) for p in given):
                    raise FloatingPointError(
                        f"the guided ε̃ = ε(∅) + w·(ε(c) − ε(∅)) overflowed to NaN/inf at step "
                        f"{self.order.get(t0, '?')} of {self.total} (t = {t0}) although the "
                        "model's outputs are finite: guidance_scale (w) is too large"
                    )
                self._fail(t0)
            return
        assert self.bad is not None
        first = (self.bad < 0) & probe.isnan()
        self.bad.copy_(torch.where(first, t[0], self.bad))

    def check(self) -> None:
        if self.bad is not None and (t := int(self.bad)) >= 0:
            self._fail(t)


def noise_source(
    step_noise: StepNoise | None,
    noise: SampleNoise,
    batch_shape: tuple[int, ...],
    device: torch.device,
    count: int,
) -> Callable[[int], Tensor]:
    """``next_z(index)``: the z of the step at loop position ``index``."""
    if step_noise is None:
        return lambda index: noise.next()
    if callable(step_noise):
        fn = step_noise
    else:
        if len(step_noise) != count:
            raise ValueError(
                f"step_noise holds {len(step_noise)} noise tensors; this run adds noise at "
                f"{count} steps (one z of shape {batch_shape} each)"
            )
        it = iter(step_noise)
        fn = lambda index: next(it)  # noqa: E731

    def next_z(index: int) -> Tensor:
        z = fn(index)
        if not isinstance(z, Tensor) or tuple(z.shape) != batch_shape:
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"step_noise gave {got} at step {index}, expected {batch_shape}")
        if not z.dtype.is_floating_point:
            raise TypeError(
                f"step_noise gave a tensor of dtype {z.dtype} at step {index}; the noise z must "
                "be floating-point (standard normal draws)"
            )
        if z.device.type == "meta" and device.type != "meta":
            raise ValueError(f"step_noise gave a meta-device tensor (no data) at step {index}")
        if z.device.type != "meta" and not bool(torch.isfinite(z).all()):
            raise ValueError(
                f"step_noise gave {int((~torch.isfinite(z)).sum())} NaN/inf value(s) at step "
                f"{index}; the noise z must be finite"
            )
        return z.to(device=device, dtype=torch.float32)

    return next_z


__all__ = [
    "FiniteWatch",
    "StepNoise",
    "as_labels",
    "as_shape",
    "check_choice",
    "check_device",
    "check_first_timestep",
    "check_steps",
    "noise_source",
]
