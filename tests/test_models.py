"""The UNet, the MLP and the classifier follow the model convention."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lib.models import (
    MLP,
    ClassifierConfig,
    DigitClassifier,
    MLPConfig,
    UNet,
    UNetConfig,
    build_model,
    count_parameters,
)
from diffusion_lib.models.embeddings import timestep_embedding
from diffusion_lib.train import PRESETS


def _randomise_output(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Zero-initialised output layers make ε̂ ≡ 0; give them weights to test wiring."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def unet() -> UNet:
    torch.manual_seed(0)
    return _randomise_output(UNet(PRESETS["digits"].model))


def test_timestep_embedding_reference():
    emb = timestep_embedding(torch.tensor([0, 3]), 4)
    # frequencies ω_k = 10000^(−k/2) for k = 0, 1: (1, 0.01)
    expected = torch.tensor(
        [[1.0, 1.0, 0.0, 0.0], [math.cos(3), math.cos(0.03), math.sin(3), math.sin(0.03)]]
    )
    assert torch.allclose(emb, expected, atol=1e-6)


def test_unet_shape_size_and_null_label(unet):
    assert unet.num_classes == 10 and unet.null_label == 10
    assert 0.5e6 <= count_parameters(unet) <= 2e6
    x = torch.randn(6, 1, 8, 8)
    t = torch.tensor([0, 1, 10, 100, 500, 999])
    with torch.no_grad():
        eps_none = unet(x, t)
        eps_null = unet(x, t, torch.full((6,), 10))
        eps_three = unet(x, t, torch.full((6,), 3))
    assert eps_none.shape == x.shape
    assert torch.equal(eps_none, eps_null)  # None means the null label
    assert not torch.allclose(eps_none, eps_three)  # the class reaches the output


def test_unet_batch_mixing_labels_equals_separate_calls(unet):
    # batched CFG concatenates real and null labels in one batch
    x = torch.randn(4, 1, 8, 8)
    t = torch.tensor([5, 5, 700, 700])
    labels = torch.tensor([2, 10, 7, 10])
    with torch.no_grad():
        together = unet(x, t, labels)
        apart = torch.cat([unet(x[i : i + 1], t[i : i + 1], labels[i : i + 1]) for i in range(4)])
    assert torch.allclose(together, apart, atol=1e-5)


def test_unet_zero_init_predicts_zero():
    eps = UNet(UNetConfig(channels=(32, 64), num_res_blocks=1))(
        torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    )
    assert torch.equal(eps, torch.zeros_like(eps))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.tensor([0, 11]), r"0…9.*10"),
        (torch.tensor([-1, 0]), r"0…9"),
        (torch.tensor([0.0, 1.0]), "integer"),
        (torch.tensor([1, 2, 3]), r"shape \(B,\)"),
    ],
)
def test_unet_bad_labels_raise_value_error(unet, labels, match):
    with pytest.raises(ValueError, match=match):
        unet(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), labels)


def test_unet_bad_inputs_raise_value_error(unet):
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        unet(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="integer timesteps"):
        unet(torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        unet(torch.randn(2, 1, 8, 8), torch.tensor([1]))


def test_unet_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        UNetConfig(image_size=6, channels=(32, 64, 64))
    with pytest.raises(ValueError, match="multiples of groups"):
        UNetConfig(channels=(30, 64))


def test_mlp_convention():
    model = _randomise_output(MLP(MLPConfig()))
    assert model.num_classes == 0 and model.null_label is None
    x = torch.randn(5, 2)
    eps = model(x, torch.arange(5))
    assert eps.shape == (5, 2) and torch.isfinite(eps).all()
    with pytest.raises(ValueError, match="unconditional"):
        model(x, torch.arange(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        model(torch.randn(5, 3), torch.arange(5))


def test_classifier_features_and_logits():
    model = DigitClassifier(ClassifierConfig()).eval()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert model.features(x).shape == (3, 64)
    assert model(x).shape == (3, 10)
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.rand(3, 64))


def test_build_model_from_dict_and_unknown_kind():
    model = build_model("unet", {"channels": [32, 64], "num_res_blocks": 1})
    assert isinstance(model, UNet) and model.config.channels == (32, 64)
    with pytest.raises(ValueError, match="unet, mlp, classifier"):
        build_model("transformer")
    with pytest.raises(ValueError, match="no field"):
        build_model("mlp", {"width": 3})
