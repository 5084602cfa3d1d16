"""Oracle models: the exact optimal ε̂ for data known in closed form.

A perfectly trained noise-prediction network returns the posterior mean of the
noise, which by Tweedie's formula is the scaled score of the noisy marginal:

    ε̂*(x_t, t) = E[ε | x_t] = −√(1 − ᾱ_t) ∇ log p_t(x_t),
    p_t = p_data ∗ N(0, (1 − ᾱ_t) I) after scaling x_0 by √ᾱ_t,

i.e. p_t(x_t) = ∫ p_data(x_0) N(x_t; √ᾱ_t x_0, (1 − ᾱ_t) I) dx_0 (Ho et al.
2020, eq. 4). For a Gaussian or a Gaussian mixture p_t is again a Gaussian or
a mixture, so ε̂* has a closed form. Sampling with an oracle separates the
*sampler's* error (few steps, σ² choice, guidance) from the *model's*: any
difference between the samples and the data is the sampler's alone.

The oracles follow the library's convention ``model(x_t, t, labels=None) -> ε̂``
(:mod:`diffusion_lib.model_api`): ``t`` holds original training timesteps,
(B,) int64. They compute in float64 and return the dtype of ``x_t``.

- :class:`GaussianOracle`: data N(μ, diag s²) of any shape (an image stand-in);
- :class:`GaussianMixtureOracle`: a diagonal Gaussian mixture in D dimensions,
  optionally class-conditional (``labels`` select the components of a class,
  ``null_label`` the whole mixture), so classifier-free guidance is exact too;
- :func:`eight_gaussians`, :func:`moons_mixture`: 2-D mixtures shaped like the
  library's toy data (:mod:`diffusion_lib.data`), class-conditional;
- :func:`exact_moments` (from :mod:`diffusion_lib.exact.moments`): the exact output
  mean and sd of every sampler for Gaussian data, with no Monte Carlo.

Every oracle also draws exact samples of its data (``sample_data``) and
evaluates the exact density of p_t (``log_prob``), for metrics at any n.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..schedule import NoiseSchedule
from .moments import analytic_variance, exact_moments

__all__ = [
    "GaussianMixtureOracle",
    "GaussianOracle",
    "analytic_variance",
    "eight_gaussians",
    "exact_moments",
    "moons_mixture",
]

_LOG_2PI = math.log(2 * math.pi)
F64 = torch.float64


class _Oracle(nn.Module):
    """ᾱ looked up by *original* timestep, shared by the oracles.

    Args:
        schedule: the training schedule (T steps). A respaced schedule works
            too: ᾱ is then known only at its kept timesteps, and calling the
            oracle at any other timestep raises ``ValueError``.
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        super().__init__()
        table = np.full(schedule.num_train_timesteps, np.nan)
        table[schedule.timesteps_numpy] = schedule.alphas_cumprod_f64
        # ᾱ_t by original timestep t, (T,) float64; not a parameter (no gradient, no state_dict)
        self.register_buffer(
            "alpha_bar_by_timestep", torch.as_tensor(table, dtype=F64), persistent=False
        )

    def alpha_bar(self, t: Tensor | int | None, batch: int, device: torch.device) -> Tensor:
        """ᾱ_t as a (B,) float64 tensor; ``t=None`` means the data (ᾱ = 1)."""
        if t is None:
            return torch.ones(batch, dtype=F64, device=device)
        table = self.alpha_bar_by_timestep.to(device)
        t = torch.as_tensor(t, device=device)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise TypeError(f"t must hold integer timesteps, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be an int or have shape ({batch},), got {tuple(t.shape)}")
        if bool(((t < 0) | (t >= table.shape[0])).any()):
            raise ValueError(f"timesteps must lie in [0, {table.shape[0] - 1}], got {t.tolist()}")
        a_bar = table[t.long()]
        if bool(a_bar.isnan().any()):
            raise ValueError("the oracle's schedule does not contain every requested timestep")
        return a_bar


def _expand(a_bar: Tensor, ndim: int) -> Tensor:
    """(B,) → (B, 1, …, 1) with ``ndim`` dimensions in all."""
    return a_bar.reshape((-1,) + (1,) * (ndim - 1))


def _no_labels(labels: Tensor | None) -> None:
    if labels is not None:
        raise ValueError("this oracle is unconditional (null_label is None); pass labels=None")


# ------------------------------------------------------------------ Gaussian
class GaussianOracle(_Oracle):
    """Exact ε̂ for data x_0 ~ N(μ, diag s²) of any shape.

    Each dimension is independent, and with v_t = ᾱ_t s² + 1 − ᾱ_t:

    - p_t(x_t) = N(x_t; √ᾱ_t μ, v_t);
    - ε̂*(x_t, t) = √(1 − ᾱ_t) (x_t − √ᾱ_t μ) / v_t;
    - x̂0 = E[x_0 | x_t] = μ + √ᾱ_t s² (x_t − √ᾱ_t μ) / v_t, and
      Var[x_0 | x_t] = s² (1 − ᾱ_t) / v_t, the same for every x_t.

    Args:
        schedule: the training schedule the sampler will use.
        mean: μ, a float or a tensor broadcastable to the sample shape, e.g.
            (1, 8, 8) for an image stand-in.
        std: s > 0, likewise.

    Attributes:
        event_shape: the shape of one sample, ``broadcast(mean, std)``, or
            (1,) when both are scalars.
    """

    null_label = None
    num_classes = 0

    def __init__(
        self, schedule: NoiseSchedule, mean: float | Tensor = 0.0, std: float | Tensor = 1.0
    ) -> None:
        super().__init__(schedule)
        mu = torch.as_tensor(mean, dtype=F64)
        s = torch.as_tensor(std, dtype=F64)
        if not bool(torch.isfinite(mu).all()) or not bool(((s > 0) & torch.isfinite(s)).all()):
            raise ValueError("mean must be finite and std finite and > 0")
        shape = torch.broadcast_shapes(mu.shape, s.shape)
        self.event_shape: tuple[int, ...] = tuple(shape) if len(shape) else (1,)
        self.register_buffer("mean", mu, persistent=False)
        self.register_buffer("std", s, persistent=False)

    def _moments(self, a_bar: Tensor, ndim: int, device: torch.device) -> tuple[Tensor, ...]:
        a = _expand(a_bar, ndim)  # (B, 1, …)
        mu, s2 = self.mean.to(device), self.std.to(device) ** 2
        return a, mu, s2, a * s2 + (1 - a)  # ..., v_t

    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """ε̂*(x_t, t), x_t (B, ...) → (B, ...) in x_t's dtype."""
        _no_labels(labels)
        x = x_t.to(F64)
        a, mu, _, v = self._moments(self.alpha_bar(t, x.shape[0], x.device), x.ndim, x.device)
        eps = (1 - a).sqrt() * (x - a.sqrt() * mu) / v
        return eps.to(x_t.dtype)

    def posterior_x0(self, x_t: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """E[x_0 | x_t] (B, ...) and Var[x_0 | x_t] (B, 1, …, broadcastable), float64."""
        x = x_t.to(F64)
        a, mu, s2, v = self._moments(self.alpha_bar(t, x.shape[0], x.device), x.ndim, x.device)
        return mu + a.sqrt() * s2 * (x - a.sqrt() * mu) / v, s2 * (1 - a) / v

    def log_prob(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        """log p_t(x), summed over all but the batch dimension: (B, ...) → (B,) float64.

        ``t=None`` is the data density p_0 = N(μ, diag s²).
        """
        x = x.to(F64)
        a, mu, _, v = self._moments(self.alpha_bar(t, x.shape[0], x.device), x.ndim, x.device)
        per_dim = -0.5 * ((x - a.sqrt() * mu) ** 2 / v + v.log() + _LOG_2PI)
        return per_dim.expand_as(x).reshape(x.shape[0], -1).sum(dim=1)

    def sample_data(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        shape: Sequence[int] | None = None,
    ) -> Tensor:
        """n exact draws of x_0 ~ N(μ, diag s²): (n, *shape) float32 (``shape``: event_shape)."""
        _no_labels(labels)
        shape = tuple(shape) if shape is not None else self.event_shape
        z = torch.randn((n, *shape), generator=generator, dtype=F64)
        return (self.mean.cpu() + self.std.cpu() * z).float()


# ------------------------------------------------------------------- mixture
class GaussianMixtureOracle(_Oracle):
    """Exact ε̂ for a diagonal Gaussian mixture p(x_0) = Σ_k π_k N(m_k, diag s_k²) in D dims.

    Noising keeps it a mixture with the same weights:
    p_t(x) = Σ_k π_k N(x; √ᾱ_t m_k, diag v_k), v_k = ᾱ_t s_k² + 1 − ᾱ_t, so with
    the responsibilities r_k(x) = π_k N_k(x) / p_t(x) (a softmax, in float64)

        ε̂*(x_t, t) = √(1 − ᾱ_t) Σ_k r_k(x_t) (x_t − √ᾱ_t m_k) / v_k.

    Class-conditional use: ``classes[k]`` is the class of component k. A label
    c keeps the components of class c with their weights renormalised, which is
    p(x_0 | c); ``null_label`` (= the number of classes) keeps all of them, which
    is p(x_0). Both ε̂ are exact, so classifier-free guidance
    ε̃ = ε̂(∅) + w (ε̂(c) − ε̂(∅)) is the exact score of p_t(x) p_t(c | x)^w
    (:meth:`guided_log_prob`).

    Args:
        schedule: the training schedule.
        means: m_k, (K, D).
        stds: s_k > 0, (K,) (isotropic) or (K, D) (diagonal).
        weights: π_k ≥ 0, (K,); normalised here.
        classes: (K,) class id of each component, ids 0 … C−1 each used at
            least once; ``None`` for an unconditional oracle.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        means: Tensor | Sequence[Sequence[float]],
        stds: Tensor | Sequence[float] | Sequence[Sequence[float]],
        weights: Tensor | Sequence[float] | None = None,
        classes: Tensor | Sequence[int] | None = None,
    ) -> None:
        super().__init__(schedule)
        m = torch.as_tensor(means, dtype=F64)
        if m.ndim != 2 or m.shape[0] < 1:
            raise ValueError(f"means must have shape (K, D), got {tuple(m.shape)}")
        k, d = m.shape
        s = torch.as_tensor(stds, dtype=F64)
        if s.shape == (k,):
            s = s[:, None].expand(k, d)
        if s.shape != (k, d) or not bool((s > 0).all()):
            raise ValueError(
                f"stds must be positive with shape ({k},) or ({k}, {d}), got {tuple(s.shape)}"
            )
        w = torch.ones(k, dtype=F64) if weights is None else torch.as_tensor(weights, dtype=F64)
        if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be ({k},), non-negative, not all zero")
        self.register_buffer("means", m, persistent=False)  # (K, D)
        self.register_buffer("stds", s.contiguous(), persistent=False)  # (K, D)
        self.register_buffer("weights", w / w.sum(), persistent=False)  # (K,)
        if classes is None:
            self.num_classes = 0
            self.null_label: int | None = None
            self.register_buffer("classes", torch.zeros(k, dtype=torch.long), persistent=False)
        else:
            c = torch.as_tensor(classes, dtype=torch.long)
            n_classes = int(c.max()) + 1 if c.numel() else 0
            if c.shape != (k,) or int(c.min()) < 0 or torch.unique(c).numel() != n_classes:
                raise ValueError(f"classes must be ({k},) ids 0 … C−1, each used at least once")
            if any(float(w[c == j].sum()) <= 0 for j in range(n_classes)):
                raise ValueError("every class needs a component with positive weight")
            self.num_classes = n_classes
            self.null_label = n_classes
            self.register_buffer("classes", c, persistent=False)

    @property
    def dim(self) -> int:
        """D, the dimension of a point."""
        return int(self.means.shape[1])

    # ------------------------------------------------------------ internals
    def _log_weights(self, labels: Tensor | int | None, batch: int, device: torch.device) -> Tensor:
        """log π_k, restricted to each sample's class: (B, K) float64 (−inf outside it)."""
        log_w = self.weights.to(device).log().expand(batch, -1)  # (B, K)
        if labels is None:
            return log_w
        if self.null_label is None:
            raise ValueError("this mixture is unconditional (no classes); pass labels=None")
        y = torch.as_tensor(labels, device=device).long()
        y = y.expand(batch) if y.ndim == 0 else y
        if y.shape != (batch,) or int(y.min()) < 0 or int(y.max()) > self.null_label:
            raise ValueError(
                f"labels must be ({batch},) in [0, {self.null_label}] "
                f"({self.null_label} = the whole mixture)"
            )
        keep = (self.classes.to(device)[None, :] == y[:, None]) | (y[:, None] == self.null_label)
        w = log_w.masked_fill(~keep, -math.inf)  # (B, K)
        return w - torch.logsumexp(w, dim=1, keepdim=True)  # renormalised within the class

    def _joint(self, x: Tensor, a_bar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log N(x; √ᾱ m_k, diag v_k) (B, K), the residuals x − √ᾱ m_k (B, K, D) and v (B, K, D)."""
        a = a_bar[:, None, None]  # (B, 1, 1)
        v = a * self.stds.to(x.device)[None] ** 2 + (1 - a)  # (B, K, D)
        diff = x[:, None, :] - a.sqrt() * self.means.to(x.device)[None]  # (B, K, D)
        log_n = -0.5 * (diff**2 / v + v.log() + _LOG_2PI).sum(dim=2)  # (B, K)
        return log_n, diff, v

    def _check_x(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        return x.to(F64)

    # ---------------------------------------------------------------- model
    def forward(self, x_t: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """ε̂*(x_t, t | c), x_t (B, D) → (B, D) in x_t's dtype; ``labels`` (B,) or None."""
        x = self._check_x(x_t)
        a_bar = self.alpha_bar(t, x.shape[0], x.device)  # (B,)
        log_n, diff, v = self._joint(x, a_bar)
        r = torch.softmax(self._log_weights(labels, x.shape[0], x.device) + log_n, dim=1)
        score = -(r[:, :, None] * diff / v).sum(dim=1)  # ∇ log p_t(x | c), (B, D)
        return (-(1 - a_bar)[:, None].sqrt() * score).to(x_t.dtype)

    def log_prob(
        self, x: Tensor, t: Tensor | int | None = None, labels: Tensor | int | None = None
    ) -> Tensor:
        """log p_t(x | c) (or log p_t(x) for ``labels=None`` / the null label): (B, D) → (B,).

        ``t=None`` is the data density p_0. Float64.
        """
        x = self._check_x(x)
        log_n, _, _ = self._joint(x, self.alpha_bar(t, x.shape[0], x.device))
        return torch.logsumexp(self._log_weights(labels, x.shape[0], x.device) + log_n, dim=1)

    def component_log_posterior(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        """log r_k(x) = log p(component k | x_t), (B, D) → (B, K) float64."""
        x = self._check_x(x)
        log_n, _, _ = self._joint(x, self.alpha_bar(t, x.shape[0], x.device))
        return torch.log_softmax(self._log_weights(None, x.shape[0], x.device) + log_n, dim=1)

    def class_log_posterior(self, x: Tensor, t: Tensor | int | None = None) -> Tensor:
        """log p_t(c | x) for every class, (B, D) → (B, C) float64."""
        if self.null_label is None:
            raise ValueError("this mixture is unconditional (no classes)")
        log_r = self.component_log_posterior(x, t)  # (B, K)
        onehot = (
            self.classes.to(log_r.device)[None, :]
            == torch.arange(self.num_classes, device=log_r.device)[:, None]
        )  # (C, K)
        return torch.logsumexp(log_r[:, None, :].masked_fill(~onehot[None], -math.inf), dim=2)

    def guided_log_prob(
        self, x: Tensor, label: int, guidance_scale: float, t: Tensor | int | None = None
    ) -> Tensor:
        """Un-normalised log of the guided target p_t(x) p_t(c | x)^w, (B, D) → (B,).

        Equal to (1 − w) log p_t(x) + w log p_t(x | c) + w log p(c): its gradient
        is the guided score −ε̃/√(1 − ᾱ_t) of classifier-free guidance with
        scale w (``guidance_scale``, w = 1: plain conditional). Evaluate it on
        a grid to draw the target that guided samples are pushed towards. Note
        that the guided sampler does not sample this density exactly: the
        guided scores at t > 0 are not the noised versions of the t = 0 target.
        """
        if self.null_label is None:
            raise ValueError("guidance needs a class-conditional mixture")
        x = self._check_x(x)
        uncond = self.log_prob(x, t)
        cond = self.log_prob(x, t, labels=torch.full((x.shape[0],), int(label)))
        return (1 - guidance_scale) * uncond + guidance_scale * cond

    def sample_data(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: Tensor | int | None = None,
    ) -> Tensor:
        """n exact draws of x_0 ~ p(x_0 | c) (or p(x_0)): (n, D) float32.

        Args:
            labels: an int or (n,) labels (the null label = the whole mixture),
                or ``None`` for the whole mixture.
        """
        return self.sample_data_with_components(n, generator, labels)[0]

    def sample_data_with_components(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: Tensor | int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Like :meth:`sample_data`, also returning the component k of each draw, (n,) int64.

        Drawn on the CPU with ``generator`` (a CPU generator), whatever the oracle's device.
        """
        cpu = torch.device("cpu")
        labels = labels.cpu() if isinstance(labels, Tensor) else labels
        probs = self._log_weights(labels, n, cpu).exp()  # (n, K)
        k = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
        z = torch.randn(n, self.dim, generator=generator, dtype=F64)
        return (self.means.cpu()[k] + self.stds.cpu()[k] * z).float(), k


# ----------------------------------------------------------------- factories
def eight_gaussians(
    schedule: NoiseSchedule, radius: float = 0.75, std: float = 0.06
) -> GaussianMixtureOracle:
    """The 8-Gaussians ring of :func:`diffusion_lib.data.sample_gaussians8`, exactly.

    Centres at angles 2πk/8 on a circle of ``radius``, isotropic ``std``, equal
    weights; component k is class k (8 classes, ``null_label`` = 8).
    """
    angle = torch.arange(8, dtype=F64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (8, 2)
    return GaussianMixtureOracle(
        schedule, means, torch.full((8,), std, dtype=F64), classes=torch.arange(8)
    )


def moons_mixture(
    schedule: NoiseSchedule, components_per_moon: int = 12, noise: float = 0.05
) -> GaussianMixtureOracle:
    """A mixture that looks like :func:`diffusion_lib.data.sample_moons`, class 0 / 1 per moon.

    Each half circle of the moons geometry (upper (cos θ, sin θ), lower
    (1 − cos θ, ½ − sin θ), θ ∈ [0, π]) is covered by ``components_per_moon``
    equal isotropic Gaussians at θ_j = (j + ½) π / J. Their sd combines the
    data's noise with the spread of a uniform arc piece of length π/J:
    √(noise² + (π/J)²/12). Then the points are centred at (0.5, 0.25) and
    scaled by 1/1.7, like the toy data. Class 0 is the upper moon, class 1 the
    lower (``null_label`` = 2). It is not the toy distribution itself (that has
    no closed-form density), only close to it: at the default 12 components
    per moon, SW₂ between 4000 toy points and the mixture does not differ
    from the floor of exact draws (``tests/test_oracle.py``).
    """
    from ..data import MOONS_SCALE

    if components_per_moon < 1:
        raise ValueError(f"components_per_moon must be >= 1, got {components_per_moon}")
    j = components_per_moon
    theta = (torch.arange(j, dtype=F64) + 0.5) * (math.pi / j)  # (J,)
    upper = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)  # (J, 2)
    lower = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)  # (J, 2)
    centre = torch.tensor([0.5, 0.25], dtype=F64)
    means = (torch.cat([upper, lower]) - centre) * MOONS_SCALE  # (2J, 2)
    std = math.sqrt(noise**2 + (math.pi / j) ** 2 / 12) * MOONS_SCALE
    classes = torch.cat([torch.zeros(j, dtype=torch.long), torch.ones(j, dtype=torch.long)])
    return GaussianMixtureOracle(
        schedule, means, torch.full((2 * j,), std, dtype=F64), classes=classes
    )
