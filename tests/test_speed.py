"""diffusion_lib.speed: autocast wrapper and the compile fallback (CPU, no real compile)."""

from __future__ import annotations

import pytest
import torch

from diffusion_lib import speed
from diffusion_lib.pretrained import load_pretrained
from diffusion_lib.speed import AutocastModel, compile_model

# bf16 keeps 8 mantissa bits (~3 significant digits); on the digits model ε̂ is O(1),
# and the measured max |bf16 − fp32| is ~0.03, so 0.1 absolute is a safe bound.
BF16_ATOL = 0.1


@pytest.fixture(scope="module")
def digits():
    model, schedule = load_pretrained("digits", device="cpu")
    return model, schedule


def _inputs(b: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 1, 8, 8, generator=g)
    t = torch.linspace(0, 999, b).long()
    labels = torch.arange(b) % 10
    return x, t, labels


def test_bf16_autocast_is_float32_and_close(digits):
    model, _ = digits
    x, t, labels = _inputs()
    fast = AutocastModel(model, "bf16")
    with torch.no_grad():
        ref = model(x, t, labels)
        out = fast(x, t, labels)
    assert out.dtype == torch.float32
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < BF16_ATOL
    assert fast.null_label == model.null_label and fast.num_classes == model.num_classes


def test_guard_raises_on_nan():
    def broken(x, t, labels=None):
        out = x.clone()
        out[0, 0, 0, 0] = float("nan")
        return out

    wrapped = AutocastModel(broken, "bf16", device_type="cpu")
    x, t, _ = _inputs(2)
    with pytest.raises(FloatingPointError, match=r"bfloat16.*t = "):
        wrapped(x, t)
    # the guard can be switched off
    assert torch.isnan(AutocastModel(broken, "bf16", "cpu", check_finite=False)(x, t)).any()


def test_bad_dtype_raises():
    with pytest.raises(ValueError, match="valid"):
        AutocastModel(lambda x, t, labels=None: x, "int8", device_type="cpu")
    with pytest.raises(ValueError, match="not supported on cpu"):
        AutocastModel(lambda x, t, labels=None: x, "fp16", device_type="cpu")
    with pytest.raises(ValueError, match="device_type"):
        AutocastModel(lambda x, t, labels=None: x, "bf16", device_type="tpu")


def test_compile_fallback_returns_eager_model(monkeypatch, digits):
    model, _ = digits

    def fail(*args, **kwargs):
        raise RuntimeError("no C compiler found")

    monkeypatch.setattr(speed.torch, "compile", fail)
    out, reason = compile_model(model, example_inputs=_inputs(2)[:2])
    assert out is model
    assert reason.startswith("eager fallback: RuntimeError: no C compiler")


def test_compile_fallback_when_warmup_fails(monkeypatch, digits):
    model, _ = digits

    def lazy_compile(module, **kwargs):
        def call(*args):
            raise RuntimeError("backend compiler failed")

        return call

    monkeypatch.setattr(speed.torch, "compile", lazy_compile)
    out, reason = compile_model(model, example_inputs=_inputs(2)[:2], mode="default")
    assert out is model and "backend compiler failed" in reason


def test_compile_success_path_without_compiling(monkeypatch, digits):
    model, _ = digits
    monkeypatch.setattr(speed.torch, "compile", lambda m, **kw: m)
    out, reason = compile_model(model, example_inputs=_inputs(2)[:2])
    assert out is model and reason == "compiled"


def test_guard_message_names_fp16_range():
    nan = lambda x, t, labels=None: x * float("nan")  # noqa: E731
    wrapped = AutocastModel(nan, "bf16", device_type="cpu")
    wrapped.dtype = torch.float16  # the constructor allows fp16 on CUDA only; test the message
    x, t, _ = _inputs(2)
    with pytest.raises(FloatingPointError, match=r"float16.*65504.*bf16"):
        wrapped(x, t)
