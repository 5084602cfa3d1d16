"""Noise schedules: β_t and everything derived from it.

Notation (Ho et al. 2020, "DDPM"; Nichol & Dhariwal 2021, "improved DDPM"):

=============================  ==========================================
attribute                      symbol
=============================  ==========================================
``betas``                      β_t
``alphas``                     α_t = 1 − β_t
``alphas_cumprod``             ᾱ_t = ∏_{s≤t} α_s
``alphas_cumprod_prev``        ᾱ_{t−1} (with ᾱ_{−1} = 1)
``sqrt_alphas_cumprod``        √ᾱ_t
``sqrt_one_minus_alphas_cumprod``  √(1 − ᾱ_t)
``sqrt_recip_alphas_cumprod``  1/√ᾱ_t
``sqrt_recipm1_alphas_cumprod``    √(1/ᾱ_t − 1)
``posterior_variance``         β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
``posterior_log_variance_clipped``  log β̃_t, with β̃_0 (= 0) replaced by β̃_1
``posterior_mean_coef1``       β_t √ᾱ_{t−1} / (1 − ᾱ_t)      (multiplies x̂0)
``posterior_mean_coef2``       (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t)  (multiplies x_t)
``timesteps``                  the original (training) timestep of each step
=============================  ==========================================

Every derived quantity is computed in float64 from the float64 betas and stored
as float32. Indices ``t`` passed to the methods below are *step indices into
this schedule* (0 … ``num_steps`` − 1). For a schedule made by
:meth:`NoiseSchedule.respace`, ``timesteps[t]`` is the original timestep the
model was trained with; for an ordinary schedule the two are the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import Tensor

ScheduleName = Literal["linear", "cosine", "sigmoid"]
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)

MAX_BETA = 0.999

_DERIVED = (
    "betas",
    "alphas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)


FinalAlpha = Literal["one", "first"]
FINAL_ALPHAS: tuple[str, ...] = get_args(FinalAlpha)


class DDIMCoefficients(NamedTuple):
    """DDIM's per-step coefficients (float32, (T,)): x_prev = c_x0 x̂0 + c_eps ε̂ + σ z."""

    c_x0: Tensor
    """√ᾱ_prev."""
    c_eps: Tensor
    """√(1 − ᾱ_prev − σ²), the weight of the "direction pointing to x_t"."""
    sigma: Tensor
    """σ_t(η)."""


def check_eta(eta: object) -> float:
    """η as a float in [0, 1], or a ``ValueError``/``TypeError`` that says why not.

    η > 1 would make 1 − ᾱ_prev − σ² negative at some steps (the DDIM update
    leaves its valid range), so it is refused rather than clamped.
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.integer, np.floating)):
        raise TypeError(f"eta must be a number in [0, 1], got {type(eta).__name__} {eta!r}")
    value = float(eta)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = σ² of DDPM's posterior β̃), "
            f"got {eta}"
        )
    return value


def extract(values: Tensor, t: Tensor | int, x_shape: Sequence[int]) -> Tensor:
    """Gather ``values[t]`` and reshape it to broadcast against a batch.

    Args:
        values: per-step values, shape (T,).
        t: step indices, shape (B,), or a single int for the whole batch.
        x_shape: the batch shape (B, ...).

    Returns:
        shape (B, 1, ..., 1) for a tensor ``t``, or (1, ..., 1) for an int ``t``.
    """
    ones = (1,) * (len(x_shape) - 1)
    if isinstance(t, int):
        return values[t].reshape((1, *ones))
    return values.gather(0, t.to(values.device)).reshape((t.shape[0], *ones))


class NoiseSchedule:
    """A discrete forward process q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I).

    Args:
        betas: β_1 … β_T as a sequence, array or tensor of shape (T,), each in
            (0, 1). They are converted to float64 before anything is derived.
        timesteps: the original timestep of each step, shape (T,). Defaults to
            ``0 … T−1``. :meth:`respace` sets it; you rarely pass it yourself.
        device: where the float32 tensors live.

    The object is immutable in spirit: :meth:`to` and :meth:`respace` return
    new schedules and never touch this one.
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_alphas_cumprod: Tensor
    sqrt_one_minus_alphas_cumprod: Tensor
    sqrt_recip_alphas_cumprod: Tensor
    sqrt_recipm1_alphas_cumprod: Tensor
    posterior_variance: Tensor
    posterior_log_variance_clipped: Tensor
    posterior_mean_coef1: Tensor
    posterior_mean_coef2: Tensor
    timesteps: Tensor

    def __init__(
        self,
        betas: Sequence[float] | np.ndarray | Tensor,
        timesteps: Sequence[int] | np.ndarray | Tensor | None = None,
        device: torch.device | str | None = None,
        train_alpha_cumprod_0: float | None = None,
    ) -> None:
        if isinstance(betas, Tensor):
            betas = betas.detach().cpu().double().numpy()
        b = np.asarray(betas, dtype=np.float64)
        if b.ndim != 1 or b.size == 0:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {b.shape}")
        if not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(b >= 1):
            raise ValueError(
                "every beta must lie in the open interval (0, 1); "
                f"got min {b.min():.3g}, max {b.max():.3g}"
            )
        if timesteps is None:
            ts = np.arange(b.size, dtype=np.int64)
        else:
            if isinstance(timesteps, Tensor):
                timesteps = timesteps.cpu().numpy()
            ts = np.asarray(timesteps, dtype=np.int64)
            if ts.shape != b.shape:
                raise ValueError(
                    f"timesteps must have one entry per beta: got {ts.shape} for {b.shape} betas"
                )
            if np.any(np.diff(ts) <= 0):
                raise ValueError("timesteps must be strictly increasing")
        self._betas64 = b
        self._ddim_cache: dict[tuple[float, str], DDIMCoefficients] = {}
        self._device = torch.device(device) if device is not None else torch.device("cpu")

        a = 1.0 - b
        a_bar = np.cumprod(a)
        a_bar_prev = np.append(1.0, a_bar[:-1])
        post_var = b * (1.0 - a_bar_prev) / (1.0 - a_bar)
        # β̃_0 = 0: log would be -inf. Use β̃_1 there (improved-diffusion), or β_0
        # when the schedule has a single step.
        first = post_var[1] if b.size > 1 else b[0]
        derived = {
            "betas": b,
            "alphas": a,
            "alphas_cumprod": a_bar,
            "alphas_cumprod_prev": a_bar_prev,
            "sqrt_alphas_cumprod": np.sqrt(a_bar),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - a_bar),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / a_bar),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / a_bar - 1.0),
            "posterior_variance": post_var,
            "posterior_log_variance_clipped": np.log(np.append(first, post_var[1:])),
            "posterior_mean_coef1": b * np.sqrt(a_bar_prev) / (1.0 - a_bar),
            "posterior_mean_coef2": (1.0 - a_bar_prev) * np.sqrt(a) / (1.0 - a_bar),
        }
        for name in _DERIVED:
            setattr(
                self,
                name,
                torch.as_tensor(derived[name], dtype=torch.float32, device=self._device),
            )
        self._timesteps64 = ts.copy()  # host copy: no device read to respace or move
        # ᾱ at the training schedule's first timestep (diffusers' alphas_cumprod[0]);
        # a respaced schedule that skips timestep 0 no longer holds it, so it is carried.
        self.train_alpha_cumprod_0 = (
            float(a_bar[0]) if train_alpha_cumprod_0 is None else float(train_alpha_cumprod_0)
        )
        self.timesteps = torch.as_tensor(ts, dtype=torch.long, device=self._device)

    # ------------------------------------------------------------------ basics
    @property
    def num_steps(self) -> int:
        """Number of steps T of this schedule."""
        return int(self._betas64.size)

    def __len__(self) -> int:
        return self.num_steps

    @property
    def num_train_timesteps(self) -> int:
        """One past the largest original timestep (T of the training schedule)."""
        return int(self._timesteps64[-1]) + 1 if self.num_steps else 0

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def timesteps_numpy(self) -> np.ndarray:
        """``timesteps`` as an int64 NumPy array (a copy, read without touching the device)."""
        return self._timesteps64.copy()

    @property
    def alphas_cumprod_f64(self) -> np.ndarray:
        """ᾱ_t in float64 (a copy), for checks that need full precision."""
        return np.cumprod(1.0 - self._betas64)

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """A copy of this schedule on ``device``. This object is not changed."""
        return NoiseSchedule(
            self._betas64,
            self._timesteps64,
            device=device,
            train_alpha_cumprod_0=self.train_alpha_cumprod_0,
        )

    def __repr__(self) -> str:
        respaced = self.num_steps != self.num_train_timesteps
        extra = f", respaced from T={self.num_train_timesteps}" if respaced else ""
        return f"NoiseSchedule(T={self.num_steps}{extra}, device={self._device})"

    # ------------------------------------------------------------ the forward q
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """Draw x_t ~ q(x_t | x_0) = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

        Args:
            x0: clean data, shape (B, ...).
            t: step indices, shape (B,).
            noise: ε, shape like ``x0``; drawn with ``torch.randn_like`` if omitted.

        Returns:
            x_t, shape like ``x0``.
        """
        self._check_t(t, x0)
        if noise is None:
            noise = torch.randn_like(x0)
        return (
            extract(self.sqrt_alphas_cumprod, t, x0.shape).to(x0.dtype) * x0
            + extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape).to(x0.dtype) * noise
        )

    def snr(self, t: Tensor | None = None) -> Tensor:
        """Signal-to-noise ratio SNR(t) = ᾱ_t / (1 − ᾱ_t), for all steps or at ``t``."""
        a_bar = self.alphas_cumprod_f64
        values = torch.as_tensor(a_bar / (1.0 - a_bar), dtype=torch.float32, device=self._device)
        return values if t is None else values[t.to(self._device)]

    def _check_t(self, t: Tensor, x: Tensor) -> None:
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"t must have shape (B,) = ({x.shape[0]},) to match x of shape "
                f"{tuple(x.shape)}; got {tuple(t.shape)}"
            )
        if t.dtype.is_floating_point:
            raise TypeError(f"t must be an integer tensor of step indices, got {t.dtype}")

    # ---------------------------------------------------------------- respacing
    def respace(self, kept: Sequence[int] | np.ndarray | Tensor) -> NoiseSchedule:
        """A shorter schedule that visits only the ``kept`` steps of this one.

        The new betas are recomputed from the kept ᾱ values,
        β'_i = 1 − ᾱ_{k_i} / ᾱ_{k_{i−1}} (improved DDPM, Appendix), so the new
        schedule has exactly the same ᾱ at every kept step and its own
        β̃ / posterior coefficients for the longer jumps. ``timesteps`` of the
        result holds the original timestep of each kept step, so a model is
        always called with the timestep it was trained on.

        Args:
            kept: step indices of this schedule, strictly increasing, each in
                [0, T−1].
        """
        if isinstance(kept, Tensor):
            kept = kept.cpu().numpy()
        k = np.asarray(kept)
        if k.ndim != 1 or k.size == 0:
            raise ValueError(f"kept must be a non-empty 1-D list of step indices, got {kept!r}")
        if not np.issubdtype(k.dtype, np.integer):
            raise TypeError(f"kept must hold integers, got dtype {k.dtype}")
        if k.min() < 0 or k.max() >= self.num_steps:
            raise ValueError(
                f"kept steps must lie in [0, {self.num_steps - 1}], "
                f"got min {k.min()}, max {k.max()}"
            )
        if np.any(np.diff(k) <= 0):
            raise ValueError("kept steps must be strictly increasing with no repeats")
        a_bar = self.alphas_cumprod_f64[k]
        a_bar_prev = np.append(1.0, a_bar[:-1])
        betas = 1.0 - a_bar / a_bar_prev
        return NoiseSchedule(
            betas,
            self._timesteps64[k],
            device=self._device,
            train_alpha_cumprod_0=self.train_alpha_cumprod_0,
        )

    def index_of(self, timestep: int) -> int:
        """The step index of original timestep ``timestep`` in this schedule.

        ``schedule.timesteps[schedule.index_of(t)] == t``. For the step API by
        timestep (diffusers' ``scheduler.step(model_output, t, sample)``).
        Raises ``ValueError`` naming the nearest visited timesteps otherwise.
        """
        if isinstance(timestep, Tensor):
            if timestep.numel() != 1:
                raise ValueError(f"timestep must be one integer, got shape {tuple(timestep.shape)}")
            timestep = timestep.item()
        if isinstance(timestep, bool) or not isinstance(timestep, (int, np.integer)):
            raise TypeError(f"timestep must be an int, got {type(timestep).__name__}")
        i = int(np.searchsorted(self._timesteps64, timestep))
        if i < self.num_steps and self._timesteps64[i] == timestep:
            return i
        near = self._timesteps64[max(0, i - 1) : i + 1].tolist()
        raise ValueError(
            f"timestep {timestep} is not one of this schedule's {self.num_steps} timesteps "
            f"(nearest: {near}); pass one of `schedule.timesteps`"
        )

    # ---------------------------------------------------------- DDIM, in float64
    def ddim_coefficients(self, eta: float, final_alpha: FinalAlpha = "one") -> DDIMCoefficients:
        """Per-step DDIM coefficients, computed in float64 and cached (float32 tensors).

        x_prev = c_x0 · x̂0 + c_eps · ε̂ + σ · z  (Song et al. 2021, eq. 12) with

        - c_x0 = √ᾱ_prev,
        - σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)  (eq. 16),
        - c_eps = √(1 − ᾱ_prev − σ²), computed as
          √((1 − ᾱ_prev)(1 − η² (1 − ᾱ_t/ᾱ_prev)/(1 − ᾱ_t))) so nothing cancels
          (at cosine t = 999 the float32 difference is 11 % off or 0).

        Args:
            eta: η in [0, 1]; η = 1 makes σ² = β̃ (the DDPM posterior variance).
            final_alpha: ᾱ_prev of the last step: ``"one"`` (ᾱ = 1, a clean
                x_0; diffusers' ``set_alpha_to_one=True``) or ``"first"`` (ᾱ
                of the training schedule's timestep 0, ``set_alpha_to_one=False``).

        Returns:
            :class:`DDIMCoefficients`, each (T,) on this schedule's device.
        """
        eta = check_eta(eta)
        if final_alpha not in FINAL_ALPHAS:
            raise ValueError(
                f"unknown final_alpha {final_alpha!r}; valid values are "
                f"{', '.join(map(repr, FINAL_ALPHAS))}"
            )
        key = (eta, final_alpha)
        if key not in self._ddim_cache:
            a_bar = self.alphas_cumprod_f64
            first = 1.0 if final_alpha == "one" else self.train_alpha_cumprod_0
            a_prev = np.append(first, a_bar[:-1])
            ratio = 1.0 - a_bar / a_prev  # the step's own β, ≥ 0
            var = eta**2 * (1.0 - a_prev) / (1.0 - a_bar) * ratio
            c_eps2 = (1.0 - a_prev) * (1.0 - eta**2 * ratio / (1.0 - a_bar))
            self._ddim_cache[key] = DDIMCoefficients(
                *(
                    torch.as_tensor(v, dtype=torch.float32, device=self._device)
                    for v in (np.sqrt(a_prev), np.sqrt(np.clip(c_eps2, 0.0, None)), np.sqrt(var))
                )
            )
        return self._ddim_cache[key]


# ---------------------------------------------------------------- constructors
def linear_schedule(
    num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """DDPM's linear schedule: β from ``beta_start`` to ``beta_end`` in T steps.

    For T ≠ 1000 both ends are scaled by 1000/T (improved DDPM), so the total
    amount of noise stays about the same.
    """
    _check_num_timesteps(num_timesteps)
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        _check_real(f"linear_schedule's {name}", value, "a number in (0, 1)")
        if not 0.0 < float(value) < 1.0:
            raise ValueError(f"linear_schedule's {name} must lie in (0, 1), got {value!r}")
    scale = 1000.0 / num_timesteps
    betas = np.linspace(beta_start * scale, beta_end * scale, num_timesteps, dtype=np.float64)
    if not betas.max() <= MAX_BETA:
        raise ValueError(
            f"linear_schedule(num_timesteps={num_timesteps}, beta_end={beta_end}) gives "
            f"β = {betas.max():.4g} after the 1000/T scaling; every β must be <= {MAX_BETA}: "
            f"use num_timesteps >= {math.ceil(1000.0 * beta_end / MAX_BETA)} or a smaller beta_end"
        )
    return NoiseSchedule(betas)


def _betas_from_alpha_bar(alpha_bar: np.ndarray, max_beta: float) -> np.ndarray:
    """β_t = 1 − ᾱ(t+1)/ᾱ(t) from a continuous ᾱ evaluated at 0, 1/T, …, 1."""
    return np.clip(1.0 - alpha_bar[1:] / alpha_bar[:-1], 0.0, max_beta)


def cosine_schedule(
    num_timesteps: int = 1000, s: float = 0.008, max_beta: float = MAX_BETA
) -> NoiseSchedule:
    """Nichol & Dhariwal's cosine schedule, ᾱ(t) ∝ cos²(π/2 · (t/T + s)/(1 + s)).

    β is clipped at ``max_beta`` (0.999): the last step would otherwise be 1.
    """
    _check_num_timesteps(num_timesteps)
    _check_real("cosine_schedule's s", s, "a finite number >= 0 (the offset; 0.008 usual)")
    if not float(s) >= 0.0:
        raise ValueError(
            f"cosine_schedule's s must be a finite number >= 0 (the offset of t/T; 0.008 in "
            f"Nichol & Dhariwal), got {s!r}: below 0 the first β would be negative"
        )
    _check_max_beta("cosine_schedule", max_beta)
    u = np.linspace(0.0, 1.0, num_timesteps + 1, dtype=np.float64)
    f = np.cos((u + s) / (1.0 + s) * math.pi / 2) ** 2
    return _schedule_of(
        _betas_from_alpha_bar(f / f[0], max_beta),
        f"cosine_schedule(num_timesteps={num_timesteps}, s={s!r}, max_beta={max_beta!r})",
    )


def sigmoid_schedule(
    num_timesteps: int = 1000,
    start: float = -3.0,
    end: float = 3.0,
    tau: float = 1.0,
    max_beta: float = MAX_BETA,
) -> NoiseSchedule:
    """Sigmoid schedule of Chen (2023), "On the importance of noise scheduling".

    ᾱ(u) = (σ(end/τ) − σ((u(end − start) + start)/τ)) / (σ(end/τ) − σ(start/τ))
    for u in [0, 1], discretised like the cosine schedule.
    """
    _check_num_timesteps(num_timesteps)
    for name, value in (("start", start), ("end", end), ("tau", tau)):
        _check_real(f"sigmoid_schedule's {name}", value, "a finite number")
    if not tau > 0:
        raise ValueError(f"sigmoid_schedule's tau must be > 0 (the temperature), got {tau!r}")
    if not end > start:
        raise ValueError(
            f"sigmoid_schedule's end must be greater than start, got start={start}, end={end}"
        )
    _check_max_beta("sigmoid_schedule", max_beta)

    def sig(z: np.ndarray | float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))

    u = np.linspace(0.0, 1.0, num_timesteps + 1, dtype=np.float64)
    v_start, v_end = sig(start / tau), sig(end / tau)
    alpha_bar = (v_end - sig((u * (end - start) + start) / tau)) / (v_end - v_start)
    alpha_bar = np.clip(alpha_bar, 1e-12, 1.0)
    return _schedule_of(
        _betas_from_alpha_bar(alpha_bar, max_beta),
        f"sigmoid_schedule(num_timesteps={num_timesteps}, start={start!r}, end={end!r}, "
        f"tau={tau!r}, max_beta={max_beta!r})",
    )


_CONSTRUCTORS = {"linear": linear_schedule, "cosine": cosine_schedule, "sigmoid": sigmoid_schedule}


def make_schedule(name: str, num_timesteps: int = 1000) -> NoiseSchedule:
    """Build a schedule by name: one of ``"linear"``, ``"cosine"``, ``"sigmoid"``."""
    if not isinstance(name, str) or name not in _CONSTRUCTORS:
        raise ValueError(
            f"unknown schedule {name!r} (the name); valid schedules are {', '.join(SCHEDULE_NAMES)}"
        )
    return _CONSTRUCTORS[name](num_timesteps)


MAX_NUM_TIMESTEPS = 1_000_000
"""The longest schedule the constructors build (T): a bound checked before allocating."""


def _check_num_timesteps(num_timesteps: int) -> None:
    if (
        isinstance(num_timesteps, bool)
        or not isinstance(num_timesteps, int)
        or not 1 <= num_timesteps <= MAX_NUM_TIMESTEPS
    ):
        raise ValueError(
            f"num_timesteps must be a positive int, at most {MAX_NUM_TIMESTEPS:,}, "
            f"got {num_timesteps!r}"
        )


def _check_real(name: str, value: object, valid: str) -> None:
    """``value`` must be a finite real number; the error names ``name`` and ``valid``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {valid}, got {type(value).__name__} {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def _check_max_beta(constructor: str, max_beta: object) -> None:
    _check_real(f"{constructor}'s max_beta", max_beta, "a number in (0, 1)")
    if not 0.0 < float(max_beta) < 1.0:  # type: ignore[arg-type]
        raise ValueError(
            f"{constructor}'s max_beta must lie in (0, 1) (it caps β; {MAX_BETA} usual), "
            f"got {max_beta!r}"
        )


def _schedule_of(betas: np.ndarray, call: str) -> NoiseSchedule:
    """``NoiseSchedule(betas)``, its error naming the constructor call that made them."""
    try:
        return NoiseSchedule(betas)
    except ValueError as err:
        raise ValueError(f"{call} gives betas it cannot use: {err}") from None


def rescale_zero_terminal_snr(alphas_cumprod: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Algorithm 1: shift and scale √ᾱ so that ᾱ_{T−1} = 0, ᾱ_0 kept.

    √ᾱ' = (√ᾱ − √ᾱ_{T−1}) · √ᾱ_0 / (√ᾱ_0 − √ᾱ_{T−1}). Returns ᾱ' (T,) float64; its last
    β is 1, which :class:`NoiseSchedule` (β ≤ 0.999) refuses.
    """
    root = np.sqrt(np.asarray(alphas_cumprod, dtype=np.float64))
    first, last = root[0], root[-1]
    return ((root - last) * first / (first - last)) ** 2
