"""The settings of a generation run: :class:`GenerateConfig`, its parsers and its checks."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..images import IMAGE_CHANNELS
from ..model_api import null_label_of
from ..sampling import Spacing, Variance, X0Mode, check_choice
from ..sampling.guidance import CFG_MODES, CfgMode
from ..sampling.noise import MAX_SEED
from ..sampling.ode import SigmaSchedule
from ..sampling.registry import SamplerSpec
from ..schedule import NoiseSchedule

PRECISIONS = ("fp32", "bf16", "fp16")
"""``GenerateConfig.precision`` values; fp16 needs CUDA."""
DEFAULT_MODEL_BATCH = 64
MAX_IMAGES = 10**8
"""The most images one run may hold (``n``): a bound checked before anything is allocated."""
MAX_LABELS = 100_000
"""The longest labels list: labels are cycled over the images, so more gains nothing."""
MAX_MODEL_BATCH = 65_536
"""The most rows per model call (``model_batch``); every call is padded to this size."""
_SPEC = SamplerSpec()  # the sampler settings' defaults, the library's one set


@dataclass(frozen=True)
class GenerateConfig:
    """Everything that decides the images of a run (recorded in ``run.json``).

    Attributes:
        n: how many images, indices 0 … n−1.
        seed: base seed; image i uses seed + i.
        sampler, steps, spacing, eta, variance, x0_mode, sigma_schedule, s_churn, s_tmin,
            s_tmax, s_noise: the
            sampler and its options, with :class:`~diffusion_lib.sampling.SamplerSpec`'s
            defaults (:attr:`spec` is that object); ``steps=None`` = all T. An option
            that does not apply to the sampler must keep its default.
        labels: classes cycled over the indices (image i gets
            ``labels[i % len(labels)]``), or ``None`` for unconditional.
        guidance: classifier-free guidance scale w, or ``None``; needs labels.
        cfg_mode: ``"batched"`` or ``"two_pass"`` guidance evaluation.
        model_batch: rows per model call (:class:`FixedBatchModel`); ``None``
            calls the model with whole batches (faster on big GPUs, but then
            the last bits of an image may depend on the batch size).
        precision: ``"fp32"``, or run the network under ``"bf16"`` (CPU or
            CUDA) or ``"fp16"`` (CUDA) autocast
            (:class:`~diffusion_lib.speed.AutocastModel`; the sampler stays fp32).
            It changes the images a little, so it is a setting.

    ``run.json`` records every field, the sampler's options included.
    """

    n: int
    seed: int = 0
    sampler: str = _SPEC.sampler
    steps: int | None = _SPEC.steps
    spacing: Spacing = _SPEC.spacing
    eta: float = _SPEC.eta
    variance: Variance = _SPEC.variance
    x0_mode: X0Mode = _SPEC.x0_mode
    labels: tuple[int, ...] | None = None
    guidance: float | None = None
    cfg_mode: CfgMode = "batched"
    model_batch: int | None = DEFAULT_MODEL_BATCH
    precision: str = "fp32"
    sigma_schedule: SigmaSchedule = _SPEC.sigma_schedule
    s_churn: float = _SPEC.s_churn
    s_tmin: float = _SPEC.s_tmin
    s_tmax: float = _SPEC.s_tmax
    s_noise: float = _SPEC.s_noise

    def __post_init__(self) -> None:
        if self.labels is not None and not isinstance(self.labels, tuple):
            try:
                object.__setattr__(self, "labels", tuple(self.labels))
            except TypeError:
                raise ValueError(
                    f"labels must be a sequence of ints or None, got {self.labels!r}"
                ) from None
        # NumPy scalars (np.int64(4), np.float64(0.5), np.str_("ddim")) become the Python
        # values they stand for, so checks and run.json see ordinary numbers and strings
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, f.name, _python_scalar(value))
        if self.labels is not None and any(isinstance(y, np.generic) for y in self.labels):
            object.__setattr__(self, "labels", tuple(_python_scalar(y) for y in self.labels))

    @property
    def spec(self) -> SamplerSpec:
        """The sampler settings as a :class:`~diffusion_lib.sampling.SamplerSpec` (checked:
        an option that does not apply to the sampler must keep its default)."""
        return SamplerSpec(
            self.sampler,
            self.steps,
            self.spacing,
            self.eta,
            self.variance,
            self.x0_mode,
            sigma_schedule=self.sigma_schedule,
            s_churn=self.s_churn,
            s_tmin=self.s_tmin,
            s_tmax=self.s_tmax,
            s_noise=self.s_noise,
        )

    def label_of(self, index: int) -> int | None:
        """The label of image ``index``, or ``None`` when unconditional."""
        return None if self.labels is None else self.labels[index % len(self.labels)]


def _python_scalar(value: object) -> object:
    """A NumPy integer, float or string as its Python value; anything else as it is (an
    ``np.bool_`` stays, so that the checks refuse it as a number)."""
    if isinstance(value, (np.integer, np.floating, np.str_)):
        return value.item()
    return value


def parse_labels(spec: str) -> tuple[int, ...]:
    """Parse a labels spec: ``"3"``, ``"1,4,7"``, ``"0-9"`` or a mix such as ``"0-2,7"``.

    At most :data:`MAX_LABELS` labels; a longer spec is refused before it is expanded.

    >>> parse_labels("0-2,7")
    (0, 1, 2, 7)
    """
    hint = "use a class (3), a range (0-9), a list (1,4,7) or a mix (0-4,7)"
    shown = _clip(str(spec))
    parts: list[tuple[int, int]] = []
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise ValueError(f"invalid labels {shown}: {hint}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"invalid labels {shown}: range {_clip(part)} runs backwards; {hint}")
        parts.append((lo, hi))
    count = sum(hi - lo + 1 for lo, hi in parts)
    if count > MAX_LABELS:
        raise ValueError(
            f"labels {shown} name {count} labels; at most {MAX_LABELS} are allowed (they are "
            "cycled over the images; a model's classes are usually 0-9)"
        )
    return tuple(y for lo, hi in parts for y in range(lo, hi + 1))


def _clip(text: str, width: int = 60) -> str:
    """``repr(text)``, shortened to about ``width`` characters."""
    return repr(text) if len(text) <= width else repr(text[:width]) + f"… ({len(text)} chars)"


def summarise(values: Sequence[int], shown: int = 5) -> str:
    """``[10, 11, 12, 13, 14, … 99999] (99990 values)`` for a long list; the list otherwise."""
    values = list(values)
    if len(values) <= shown + 1:
        return str(values)
    head = ", ".join(str(v) for v in values[:shown])
    return f"[{head}, … {values[-1]}] ({len(values)} values)"


def parse_indices(spec: str, n: int) -> range:
    """``"A:B"`` → ``range(A, B)`` within [0, n); either end may be left out."""
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", str(spec))
    if m is None:
        raise ValueError(f"invalid indices {spec!r}: use START:STOP, e.g. 0:5000 or 5000:")
    start = int(m.group(1)) if m.group(1) else 0
    stop = int(m.group(2)) if m.group(2) else n
    if not 0 <= start < stop <= n:
        raise ValueError(
            f"indices {spec!r} must satisfy 0 <= START < STOP <= n = {n}; got {start}:{stop}"
        )
    return range(start, stop)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def image_shape_of(model: object) -> tuple[int, ...]:
    """The (C, H, W) of one sample, read from ``model.sample_shape`` or ``model.config``.

    Raises:
        ValueError: the model makes something other than images (e.g. 2-D
            points), or its sample shape cannot be told.
    """
    shape = getattr(model, "sample_shape", None)
    config = getattr(model, "config", None)
    if shape is None and config is not None:
        if hasattr(config, "image_size") and hasattr(config, "image_channels"):
            shape = (config.image_channels, config.image_size, config.image_size)
        elif hasattr(config, "dim"):
            shape = (config.dim,)
    if shape is None:
        raise ValueError(
            f"cannot tell the sample shape of a {type(model).__name__}: give it a "
            "`sample_shape` attribute, e.g. (1, 8, 8), or pass sample_shape="
        )
    return check_image_shape(shape)


def check_image_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple if it is (C, H, W) with C in 1, 3, 4; else ``ValueError``."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or shape[0] not in IMAGE_CHANNELS or min(shape) < 1:
        raise ValueError(
            f"generation to PNG needs an image model with samples of shape (C, H, W), C in "
            f"{IMAGE_CHANNELS}; this model makes samples of shape {shape} (2-D points for "
            "'moons'): sample those with diffusion_lib.sample(model, schedule, (n, *shape)) "
            "and save the array yourself"
        )
    return shape


def check_settings(config: GenerateConfig) -> None:
    """The checks that need no model: every number and choice, bounded before any allocation.

    Raises:
        ValueError: naming the bad setting and its valid values.
    """
    c = config
    if not _is_int(c.n) or not 1 <= c.n <= MAX_IMAGES:
        raise ValueError(f"n must be an int in [1, {MAX_IMAGES:,}], got {c.n!r}")
    if not _is_int(c.seed) or c.seed < 0 or c.seed + c.n - 1 > MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**63 - n], got {c.seed!r}")
    check_choice("cfg_mode", c.cfg_mode, CFG_MODES)
    check_choice("precision", c.precision, PRECISIONS)
    if c.steps is not None and (not _is_int(c.steps) or c.steps < 1):
        raise ValueError(f"steps must be an int >= 1 (at most the model's T), got {c.steps!r}")
    if not (_is_number(c.eta) and 0 <= c.eta <= 1):
        raise ValueError(
            f"eta must be a number in [0, 1] (DDIM's η: 0 = deterministic, 1 = DDPM-like "
            f"noise; above 1 the update leaves its valid range), got {c.eta!r}"
        )
    _ = c.spec  # the sampler and its options: valid names, options that apply
    if c.model_batch is not None and (
        not _is_int(c.model_batch) or not 1 <= c.model_batch <= MAX_MODEL_BATCH
    ):
        raise ValueError(
            f"model_batch must be an int in [1, {MAX_MODEL_BATCH}] or None, got {c.model_batch!r}"
        )
    if c.labels is not None:
        if len(c.labels) == 0 or not all(_is_int(y) for y in c.labels):
            raise ValueError(
                f"labels must be a non-empty sequence of ints, got {_clip(str(c.labels))}"
            )
        if len(c.labels) > MAX_LABELS:
            raise ValueError(f"labels may hold at most {MAX_LABELS} values, got {len(c.labels)}")
    if c.guidance is not None and not _is_number(c.guidance):
        raise ValueError(f"guidance must be a finite number, got {c.guidance!r}")


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def check_config(config: GenerateConfig, model: object, schedule: NoiseSchedule) -> None:
    """:func:`check_settings`, then the checks against the model and its schedule; touch nothing.

    Raises:
        ValueError: naming the bad setting and the valid values.
    """
    c = config
    null_label = null_label_of(model)
    if c.labels is not None and null_label is None:
        raise ValueError(
            "labels were given but the model is unconditional (it has no classes); "
            "leave the labels out"
        )
    if c.guidance is not None and null_label is None:
        raise ValueError(
            "guidance was given but the model is unconditional (it has no null label); "
            "classifier-free guidance needs a class-conditional model"
        )
    check_settings(c)
    if c.guidance is not None and c.labels is None:
        raise ValueError("guidance needs labels (the classes to guide towards)")
    num_timesteps = schedule.num_steps
    if c.steps is not None and not 1 <= c.steps <= num_timesteps:
        raise ValueError(
            f"steps must be an int between 1 and T = {num_timesteps} (the model's schedule), "
            f"got {c.steps!r}"
        )
    num_classes = int(getattr(model, "num_classes", null_label or 0) or 0)
    if c.labels is not None:
        if num_classes < 1:
            raise ValueError(
                "labels were given but the model is unconditional (it has no classes); "
                "leave the labels out"
            )
        bad = sorted({int(y) for y in c.labels if not 0 <= y < num_classes})
        if bad:
            raise ValueError(
                f"labels {summarise(bad)} are out of range: this model's classes are "
                f"0-{num_classes - 1} (leave the labels out for unconditional samples)"
            )
