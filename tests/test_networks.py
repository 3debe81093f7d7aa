"""Correction networks: parameter counts, N-D convolutions, layers() for feature reuse, N-D masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciml_zoo.config import ModelConfig
from sciml_zoo.errors import ConfigError
from sciml_zoo.nn import PADDING_MODES, CorrectionNet, Normalization, build_body


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_published_parameter_counts_are_kept() -> None:
    assert _count(build_body("cnn", 3, 2, dim=2)) == 55_298  # the book's CNN
    assert _count(build_body("resnet", 3, 2, dim=2)) == 260_354  # the paper's ResNet


def test_the_ks_net_has_about_1500_weights() -> None:
    body = build_body("cnn", 1, 1, dim=1, width=16, kernel_size=5, depth=3, activation="gelu", padding_mode="circular")
    assert _count(body) == 1_473
    assert [type(m) for m in body] == [nn.Conv1d, nn.GELU, nn.Conv1d, nn.GELU, nn.Conv1d]


@pytest.mark.parametrize(("dim", "conv"), [(1, nn.Conv1d), (2, nn.Conv2d), (3, nn.Conv3d)])
@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_convolutions_follow_the_spatial_dims(dim: int, conv: type, arch: str) -> None:
    body = build_body(arch, 3, 2, dim=dim, width=4, kernel_size=3, blocks=1, padding_mode="circular")
    convs = [m for m in body.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert convs and all(type(m) is conv for m in convs)
    x = torch.randn(2, 3, *[6] * dim)
    assert body(x).shape == (2, 2, *[6] * dim)


def _net(dim: int, *, zero_mean: bool = False, channels: int = 2) -> CorrectionNet:
    spatial = [8, 6, 4][:dim]
    mask = torch.ones(channels, *spatial, dtype=torch.bool)
    mask[..., -1] = False  # a padded layout
    states = torch.randn(3, 5, channels, *spatial)
    params = torch.tensor([[1.0], [2.0], [4.0]])
    norm = Normalization.from_training_data(states, params, mask)
    body = build_body("cnn", channels + 1, channels, dim=dim, width=4, kernel_size=3, depth=3)
    return CorrectionNet(body, norm, mask, zero_mean=zero_mean)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_correction_is_masked_and_zero_mean_in_any_dimension(dim: int) -> None:
    net = _net(dim, zero_mean=True)
    state = torch.randn(2, 2, *net.mask.shape[1:])
    out = net(state, torch.tensor([[1.5], [3.0]]))
    assert out.shape == state.shape and net.dim == dim
    assert bool((out[..., -1] == 0).all())  # zero outside the valid mask
    axes = tuple(range(-dim, 0))
    torch.testing.assert_close(out.sum(dim=axes), torch.zeros(2, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_layers_run_in_order_give_the_body_and_name_its_parameters(dim: int) -> None:
    net = _net(dim)
    state, params = torch.randn(2, 2, *net.mask.shape[1:]), torch.tensor([[1.0], [2.0]])
    h = net.features(state, params)
    for _, stage in net.layers():
        h = stage(h)
    torch.testing.assert_close(net.output(h), net(state, params))
    names = {name for name, _ in net.named_parameters() if name.startswith("body.")}
    owned = {prefix + n for prefix, stage in net.layers() for n, _ in stage.named_parameters()}
    assert owned == names
    assert [prefix for prefix, _ in net.layers()] == [f"body.{i}." for i in range(5)]


def test_model_config_validates_depth_activation_and_padding() -> None:
    assert ModelConfig(depth=3, activation="gelu", padding="circular").depth == 3
    with pytest.raises(ConfigError, match="activation"):
        ModelConfig(activation="relu6")
    with pytest.raises(ConfigError, match="depth"):
        ModelConfig(depth=0)
    with pytest.raises(ConfigError, match="padding"):
        ModelConfig(padding="mirror")
    assert "circular" in PADDING_MODES


def test_build_body_errors_name_the_choices() -> None:
    with pytest.raises(ConfigError, match="cnn, resnet"):
        build_body("unet", 1, 1)
    with pytest.raises(ConfigError, match="1, 2 or 3"):
        build_body("cnn", 1, 1, dim=4)
