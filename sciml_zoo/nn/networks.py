"""Correction networks of Solver-in-the-Loop (Um et al. 2020), conditioned on parameters.

Both bodies are ``nn.Sequential`` so that zeroth-order estimators can reuse the
activations before a perturbed layer (DeepZero's feature reuse).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sciml_zoo.errors import ConfigError

__all__ = ["sol_cnn", "sol_resnet", "ResidualBlock", "CorrectionNet", "Normalization", "build_body"]


def sol_cnn(
    in_channels: int, out_channels: int, *, width: int = 32, kernel_size: int = 5, padding_mode: str = "zeros"
) -> nn.Sequential:
    """The book's small CNN: 4 convs ``in -> w -> w -> w -> out``, LeakyReLU.

    With ``in=3, out=2, width=32, kernel=5`` it has 55,298 parameters.
    """
    pad = kernel_size // 2
    layers: list[nn.Module] = []
    channels = [in_channels, width, width, width]
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        layers += [nn.Conv2d(c_in, c_out, kernel_size, padding=pad, padding_mode=padding_mode), nn.LeakyReLU(0.2)]
    layers.append(nn.Conv2d(width, out_channels, kernel_size, padding=pad, padding_mode=padding_mode))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """``x + conv(leaky(conv(x)))`` followed by LeakyReLU (the paper's block)."""

    def __init__(self, width: int, kernel_size: int, padding_mode: str = "zeros") -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(width, width, kernel_size, padding=pad, padding_mode=padding_mode)
        self.conv2 = nn.Conv2d(width, width, kernel_size, padding=pad, padding_mode=padding_mode)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


def sol_resnet(
    in_channels: int,
    out_channels: int,
    *,
    width: int = 32,
    kernel_size: int = 5,
    blocks: int = 5,
    padding_mode: str = "zeros",
) -> nn.Sequential:
    """The paper's ResNet: conv in, ``blocks`` residual blocks, conv out.

    With ``in=3, out=2, width=32, kernel=5, blocks=5`` it has 260,354 parameters.
    """
    pad = kernel_size // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, width, kernel_size, padding=pad, padding_mode=padding_mode),
        nn.LeakyReLU(0.2),
        *[ResidualBlock(width, kernel_size, padding_mode) for _ in range(blocks)],
        nn.Conv2d(width, out_channels, kernel_size, padding=pad, padding_mode=padding_mode),
    )


def build_body(arch: str, in_channels: int, out_channels: int, **options: Any) -> nn.Sequential:
    """Build a network body by name (``"cnn"`` or ``"resnet"``)."""
    if arch == "cnn":
        options.pop("blocks", None)
        return sol_cnn(in_channels, out_channels, **options)
    if arch == "resnet":
        return sol_resnet(in_channels, out_channels, **options)
    raise ConfigError(f"unknown model arch {arch!r}; choose 'cnn' or 'resnet'")


class Normalization(nn.Module):
    """Training-set statistics: per-channel state std and parameter mean/std.

    Computed from *training* simulations only (the PBDL notebook leaks test
    statistics; we do not).
    """

    def __init__(self, state_std: Tensor, param_mean: Tensor, param_std: Tensor) -> None:
        super().__init__()
        self.register_buffer("state_std", state_std.float().clone())
        self.register_buffer("param_mean", param_mean.float().clone())
        self.register_buffer("param_std", param_std.float().clone())

    @classmethod
    def from_training_data(cls, states: Tensor, params: Tensor, mask: Tensor) -> Normalization:
        """``states`` (S,T,C,H,W) and ``params`` (S,P) of the training simulations."""
        c = states.shape[2]
        per_channel = states.transpose(0, 2).reshape(c, -1, *states.shape[3:])
        std = torch.stack([per_channel[i][:, mask[i]].std() for i in range(c)])
        p_std = params.std(0) if len(params) > 1 else torch.ones(params.shape[1])
        p_std = torch.where(p_std > 0, p_std, torch.ones_like(p_std))
        return cls(std.clamp_min(1e-8), params.mean(0), p_std)


class CorrectionNet(nn.Module):
    """Additive correction ``C(state, params)`` with normalised inputs and outputs.

    Input channels: the state divided by the training std, plus one constant
    channel per physical parameter holding its normalised value. The output is
    rescaled by the std and zeroed outside the adapter's valid mask.

    Args:
        body: maps ``(B, C+P, H, W)`` to ``(B, C, H, W)``.
        normalization: training-set statistics.
        mask: boolean ``(C, H, W)`` valid mask of the state layout.
        zero_mean: subtract each channel's spatial mean (over valid entries)
            from the correction, so that it cannot change conserved totals
            (mass in Cahn-Hilliard, momentum in periodic Burgers).
    """

    def __init__(self, body: nn.Module, normalization: Normalization, mask: Tensor, *, zero_mean: bool = False) -> None:
        super().__init__()
        self.body = body
        self.norm = normalization
        self.zero_mean = zero_mean
        self.register_buffer("mask", mask.to(torch.float32))

    def features(self, state: Tensor, params: Tensor) -> Tensor:
        """The body's input ``(B, C+P, H, W)``."""
        std = self.norm.state_std.view(1, -1, 1, 1)
        p = (params.to(state.dtype) - self.norm.param_mean) / self.norm.param_std
        p = p.view(*p.shape, 1, 1).expand(-1, -1, *state.shape[-2:])
        return torch.cat([state / std, p], dim=1)

    def output(self, body_out: Tensor) -> Tensor:
        """Rescale and mask the body's output (and remove its mean if ``zero_mean``)."""
        out = body_out * self.norm.state_std.view(1, -1, 1, 1) * self.mask
        if self.zero_mean:
            mean = out.sum(dim=(-2, -1), keepdim=True) / self.mask.sum(dim=(-2, -1), keepdim=True)
            out = (out - mean) * self.mask
        return out

    def forward(self, state: Tensor, params: Tensor) -> Tensor:
        return self.output(self.body(self.features(state, params)))
