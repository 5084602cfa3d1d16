"""Classifier-free guidance (Ho & Salimans 2022).

    ε̃(x_t, t, c) = ε(x_t, t, ∅) + w · (ε(x_t, t, c) − ε(x_t, t, ∅))

w = 0 is the unconditional model, w = 1 the plain conditional model, w > 1
pushes samples towards what distinguishes class c.

∅ must be a label the model was *trained* to read as "no condition" (label
dropout during training). With integer class labels, ``zeros_like(labels)`` is
not ∅: it is class 0. Our models reserve ``null_label = num_classes``.

Two ways to evaluate the two terms, equal up to float rounding:

- ``"two_pass"``: two model calls of batch B;
- ``"batched"``: one call of batch 2B on ``cat([x, x])`` with
  ``cat([labels, null])``; usually faster on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import Tensor

from ..model_api import EpsModel, check_eps, null_label_of

CfgMode = Literal["batched", "two_pass"]
CFG_MODES: tuple[str, ...] = get_args(CfgMode)

EpsFn = Callable[[Tensor, Tensor], Tensor]
"""``eps_fn(x_t, t) -> ε̂``: a model with its condition and guidance bound in."""


def combine(eps_uncond: Tensor, eps_cond: Tensor, scale: float) -> Tensor:
    """ε̃ = ε(∅) + w (ε(c) − ε(∅)), all of shape (B, ...)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


class EpsParts(NamedTuple):
    """One evaluation of the model inside the sampler, all (B, ...)."""

    eps: Tensor
    """The ε̂ the step uses: guided ε̃ under guidance, else the model's output."""
    eps_cond: Tensor | None
    """ε(x_t, t, c) under guidance, else ``None``."""
    eps_uncond: Tensor | None
    """ε(x_t, t, ∅) under guidance, else ``None``."""


EpsPartsFn = Callable[[Tensor, Tensor], EpsParts]


def _plain_parts(model: EpsModel, x_t: Tensor, t: Tensor, labels: Tensor | None) -> EpsParts:
    eps = model(x_t, t, labels)
    if isinstance(eps, Tensor):  # the shape is checked by the loop, which names the step
        check_eps(eps, None)
    return EpsParts(eps, None, None)


def _two_pass_parts(
    model: EpsModel, x_t: Tensor, t: Tensor, labels: Tensor, scale: float
) -> EpsParts:
    shape = tuple(x_t.shape)
    eps_cond = check_eps(model(x_t, t, labels), shape, "the model (the conditional call)")
    eps_uncond = check_eps(
        model(x_t, t, None), shape, "the model (the unconditional call, labels=None)"
    )
    return EpsParts(combine(eps_uncond, eps_cond, scale), eps_cond, eps_uncond)


def _batched_parts(model: EpsModel, x_t: Tensor, t: Tensor, y_in: Tensor, scale: float) -> EpsParts:
    # y_in = cat([labels, null]), (2B,): the same at every step, made once (_make_plain_parts_fn)
    x_in = torch.cat([x_t, x_t])  # (2B, ...)
    t_in = torch.cat([t, t])  # (2B,)
    out = check_eps(
        model(x_in, t_in, y_in),
        tuple(x_in.shape),
        "the model (the batched guidance call)",
        "its input cat([x_t, x_t])",
    )
    eps_cond, eps_uncond = out.chunk(2)
    return EpsParts(combine(eps_uncond, eps_cond, scale), eps_cond, eps_uncond)


def check_guidance_scale(guidance_scale: object) -> float | None:
    """w as a finite float (``None`` stays ``None``), or a ``TypeError``/``ValueError``."""
    if guidance_scale is None:
        return None
    if isinstance(guidance_scale, bool) or not isinstance(
        guidance_scale, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            f"guidance_scale must be a number (w; 0 = unconditional, 1 = conditional) or None, "
            f"got {type(guidance_scale).__name__} {guidance_scale!r}"
        )
    w = float(guidance_scale)
    if not math.isfinite(w):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")
    return w


def rescale_guided(eps: Tensor, eps_cond: Tensor, phi: float) -> Tensor:
    """Guidance rescale (Lin et al. 2024, eq. 15–16), per sample over the non-batch dims.

    ε̃_r = φ · ε̃ · std(ε(c))/std(ε̃) + (1 − φ) · ε̃: a large w inflates ε̃'s scale
    (over-exposed, saturated samples); φ pulls it back to the conditional one.

    The std is taken over each sample's own elements, so it is meant for images: for
    2-D points it is the spread of two numbers, which can be near 0 and blows the
    ratio up (notebook 07, section 4, shows it). There is no ε in the ratio, as in the
    paper.

    Args:
        eps: (B, ...) guided ε̃.
        eps_cond: (B, ...) conditional ε(c).
        phi: φ in [0, 1]; 0 leaves ε̃ unchanged.
    """
    dims = tuple(range(1, eps.ndim))
    ratio = eps_cond.std(dim=dims, keepdim=True) / eps.std(dim=dims, keepdim=True)
    return phi * eps * ratio + (1 - phi) * eps


def check_guidance_options(
    rescale: object, interval: object, num_timesteps: int | None = None
) -> tuple[float, tuple[int, int] | None]:
    """φ in [0, 1] and an interval (lo, hi) of original timesteps with lo <= hi (both in
    [0, T − 1] when ``num_timesteps`` T is given), or errors naming the argument.

    The interval is closed at both ends: guidance applies at lo ≤ t ≤ hi, so a visited
    timestep equal to lo or hi is guided (``lo == hi`` guides at that one timestep).
    Kynkäänniemi et al. 2024 define theirs half-open in σ, σ ∈ (σ_lo, σ_hi]; as σ grows
    with t, theirs is lo < t ≤ hi and differs from ours only at t = lo: to match it, pass
    (lo + 1, hi)."""
    if isinstance(rescale, bool) or not isinstance(rescale, (int, float, np.integer, np.floating)):
        raise TypeError(f"guidance_rescale must be a number in [0, 1], got {rescale!r}")
    if not 0.0 <= float(rescale) <= 1.0:
        raise ValueError(f"guidance_rescale must be in [0, 1] (0 = off), got {rescale}")
    if interval is None:
        return float(rescale), None
    ok = (
        isinstance(interval, (tuple, list))
        and len(interval) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in interval)
    )
    if not ok or interval[0] > interval[1]:  # type: ignore[index]
        raise ValueError(
            f"guidance_interval must be (lo, hi), two original timesteps with lo <= hi, "
            f"e.g. (100, 700); got {interval!r}"
        )
    lo, hi = int(interval[0]), int(interval[1])  # type: ignore[index]
    if num_timesteps is not None and not 0 <= lo <= hi <= num_timesteps - 1:
        raise ValueError(
            f"guidance_interval must lie within the model's timesteps [0, {num_timesteps - 1}] "
            f"(T = {num_timesteps}); got ({lo}, {hi}), which would leave guidance off at "
            "every step outside it"
        )
    return float(rescale), (lo, hi)


def make_eps_parts_fn(
    model: EpsModel,
    labels: Tensor | None = None,
    guidance_scale: float | None = None,
    cfg_mode: CfgMode = "batched",
    guidance_rescale: float = 0.0,
    guidance_interval: tuple[int, int] | None = None,
    num_timesteps: int | None = None,
) -> EpsPartsFn:
    """Like :func:`make_eps_fn`, but also returns ε(c) and ε(∅) under guidance.

    Every model output is checked to be a floating-point tensor of x_t's shape (each
    call of two-pass guidance on its own: a (1, ...) unconditional ε̂ would otherwise
    broadcast); only metadata is read.

    Args:
        guidance_rescale: φ of :func:`rescale_guided`; 0 (default) is plain guidance.
        guidance_interval: (lo, hi): guide only at original timesteps lo ≤ t ≤ hi and use
            the conditional ε(c) elsewhere (Kynkäänniemi et al. 2024); ``None`` guides at
            every step. Both ends are included (a timestep exactly at lo or hi is guided);
            the paper's interval, (σ_lo, σ_hi], excludes its low end, so (lo + 1, hi) is
            the paper's (lo, hi). Chosen per sample on the device (no host read).
        num_timesteps: the model's T; when given, ``guidance_interval`` must lie in
            [0, T − 1].
    """
    if cfg_mode not in CFG_MODES:
        raise ValueError(f"unknown cfg_mode {cfg_mode!r}; valid modes are {', '.join(CFG_MODES)}")
    scale = check_guidance_scale(guidance_scale)
    phi, interval = check_guidance_options(guidance_rescale, guidance_interval, num_timesteps)
    if scale is None:
        if phi or interval is not None:
            raise ValueError("guidance_rescale and guidance_interval need a guidance_scale")
        return lambda x_t, t: _plain_parts(model, x_t, t, labels)
    plain = _make_plain_parts_fn(model, labels, scale, cfg_mode)
    if not phi and interval is None:
        return plain

    def shaped(x_t: Tensor, t: Tensor) -> EpsParts:
        parts = plain(x_t, t)
        assert parts.eps_cond is not None
        eps = rescale_guided(parts.eps, parts.eps_cond, phi) if phi else parts.eps
        if interval is not None:
            inside = ((t >= interval[0]) & (t <= interval[1])).reshape(
                (-1,) + (1,) * (eps.ndim - 1)
            )
            eps = torch.where(inside, eps, parts.eps_cond)
        return EpsParts(eps, parts.eps_cond, parts.eps_uncond)

    return shaped


def _make_plain_parts_fn(
    model: EpsModel, labels: Tensor | None, scale: float, cfg_mode: CfgMode
) -> EpsPartsFn:
    null_label = null_label_of(model)
    classes = int(getattr(model, "num_classes", 0) or 0)
    if null_label is None and classes > 0:
        raise ValueError(
            f"guidance_scale needs the model's null label (the label meaning 'no class'); this "
            f"model has {classes} classes but no `null_label` (for a diffusers UNet whose last "
            "class means 'no class': from_diffusers(..., null_label=K)); use "
            "guidance_scale=None"
        )
    if null_label is None:
        raise ValueError(
            "guidance_scale was given but the model is unconditional (it has no `null_label`); "
            "use guidance_scale=None"
        )
    if labels is None:
        raise ValueError("classifier-free guidance needs `labels` (the class c to guide towards)")
    if cfg_mode == "two_pass":
        return lambda x_t, t: _two_pass_parts(model, x_t, t, labels, scale)
    y_in = torch.cat([labels, torch.full_like(labels, null_label)])  # (2B,), once per run
    return lambda x_t, t: _batched_parts(model, x_t, t, y_in, scale)


def make_eps_fn(
    model: EpsModel,
    labels: Tensor | None = None,
    guidance_scale: float | None = None,
    cfg_mode: CfgMode = "batched",
) -> EpsFn:
    """Bind a condition (and optional guidance) into an ``eps_fn(x_t, t)``.

    Args:
        model: follows ``model(x_t, t, labels=None) -> ε̂``.
        labels: (B,) int64 class labels, or ``None`` for unconditional sampling.
        guidance_scale: w, a finite number; ``None`` calls the model once with ``labels``.
        cfg_mode: ``"batched"`` (default) or ``"two_pass"``.
    """
    parts = make_eps_parts_fn(model, labels, guidance_scale, cfg_mode)
    return lambda x_t, t: parts(x_t, t).eps
