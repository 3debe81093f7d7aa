"""Correction networks of Solver-in-the-Loop (Um et al. 2020), conditioned on parameters.

Convolutions are ``Conv1d``, ``Conv2d`` or ``Conv3d``, chosen by ``dim`` (the
number of spatial axes of the state). Both bodies are ``nn.Sequential`` and
:meth:`CorrectionNet.layers` lists their stages with parameter-name prefixes,
so that zeroth-order estimators can reuse the activations before a perturbed
layer (DeepZero's feature reuse).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sciml_zoo.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "ARCHS",
    "PADDING_MODES",
    "CorrectionNet",
    "Normalization",
    "ResidualBlock",
    "build_body",
    "sol_cnn",
    "sol_resnet",
]

PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
"""Padding modes of the convolutions (``circular`` for periodic domains)."""
ACTIVATIONS = ("leaky_relu", "gelu")
"""Activation names: LeakyReLU(0.2) as in the paper, or GELU."""
ARCHS = ("cnn", "resnet")
"""Network bodies built by :func:`build_body`."""

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _conv(dim: int, c_in: int, c_out: int, kernel_size: int, padding_mode: str) -> nn.Module:
    if dim not in _CONV:
        raise ConfigError(f"dim must be 1, 2 or 3 spatial axes, got {dim!r}")
    if padding_mode not in PADDING_MODES:
        raise ConfigError(f"padding_mode must be one of {', '.join(PADDING_MODES)}; got {padding_mode!r}")
    return _CONV[dim](c_in, c_out, kernel_size, padding=kernel_size // 2, padding_mode=padding_mode)


def _activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "gelu":
        return nn.GELU()
    raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}")


def sol_cnn(
    in_channels: int,
    out_channels: int,
    *,
    dim: int = 2,
    width: int = 32,
    kernel_size: int = 5,
    depth: int = 4,
    activation: str = "leaky_relu",
    padding_mode: str = "zeros",
) -> nn.Sequential:
    """A plain CNN of ``depth`` convolutions ``in -> w -> ... -> w -> out`` with activations between.

    The defaults are the book's small CNN (4 convs, LeakyReLU): with ``in=3,
    out=2, width=32, kernel=5`` in 2D it has 55,298 parameters. The KS net
    (1D, ``depth=3, width=16, kernel=5``, GELU, circular) has 1,473 for one
    channel in and out.
    """
    if depth < 1:
        raise ConfigError(f"depth must be >= 1 convolution, got {depth}")
    channels = [in_channels, *[width] * (depth - 1), out_channels]
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        layers.append(_conv(dim, c_in, c_out, kernel_size, padding_mode))
        if i < depth - 1:
            layers.append(_activation(activation))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """``x + conv(act(conv(x)))`` followed by the activation (the paper's block)."""

    def __init__(
        self,
        width: int,
        kernel_size: int,
        padding_mode: str = "zeros",
        *,
        dim: int = 2,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        self.conv1 = _conv(dim, width, width, kernel_size, padding_mode)
        self.conv2 = _conv(dim, width, width, kernel_size, padding_mode)
        self.act = _activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


def sol_resnet(
    in_channels: int,
    out_channels: int,
    *,
    dim: int = 2,
    width: int = 32,
    kernel_size: int = 5,
    blocks: int = 5,
    activation: str = "leaky_relu",
    padding_mode: str = "zeros",
) -> nn.Sequential:
    """The paper's ResNet: conv in, ``blocks`` residual blocks, conv out.

    With ``in=3, out=2, width=32, kernel=5, blocks=5`` in 2D it has 260,354 parameters.
    """
    return nn.Sequential(
        _conv(dim, in_channels, width, kernel_size, padding_mode),
        _activation(activation),
        *[ResidualBlock(width, kernel_size, padding_mode, dim=dim, activation=activation) for _ in range(blocks)],
        _conv(dim, width, out_channels, kernel_size, padding_mode),
    )


def build_body(
    arch: str,
    in_channels: int,
    out_channels: int,
    *,
    dim: int = 2,
    width: int = 32,
    kernel_size: int = 5,
    blocks: int = 5,
    depth: int = 4,
    activation: str = "leaky_relu",
    padding_mode: str = "zeros",
) -> nn.Sequential:
    """Build a network body by name.

    Args:
        arch: ``"cnn"`` (uses ``depth``) or ``"resnet"`` (uses ``blocks``).
        in_channels, out_channels: channels in and out.
        dim: spatial axes of the state (1, 2 or 3): Conv1d, Conv2d or Conv3d.
        width: hidden channels.
        kernel_size: odd kernel size.
        blocks: residual blocks of the resnet.
        depth: convolutions of the cnn.
        activation: one of :data:`ACTIVATIONS`.
        padding_mode: one of :data:`PADDING_MODES`.
    """
    if arch == "cnn":
        return sol_cnn(
            in_channels,
            out_channels,
            dim=dim,
            width=width,
            kernel_size=kernel_size,
            depth=depth,
            activation=activation,
            padding_mode=padding_mode,
        )
    if arch == "resnet":
        return sol_resnet(
            in_channels,
            out_channels,
            dim=dim,
            width=width,
            kernel_size=kernel_size,
            blocks=blocks,
            activation=activation,
            padding_mode=padding_mode,
        )
    raise ConfigError(f"unknown model arch {arch!r}; choose one of {', '.join(ARCHS)}")


class Normalization(nn.Module):
    """Training-set statistics: per-channel state std and parameter mean/std.

    Computed from *training* simulations only (the PBDL notebook leaks test
    statistics; we do not).
    """

    state_std: Tensor
    param_mean: Tensor
    param_std: Tensor

    def __init__(self, state_std: Tensor, param_mean: Tensor, param_std: Tensor) -> None:
        super().__init__()
        self.register_buffer("state_std", state_std.float().clone())
        self.register_buffer("param_mean", param_mean.float().clone())
        self.register_buffer("param_std", param_std.float().clone())

    @classmethod
    def from_training_data(cls, states: Tensor, params: Tensor, mask: Tensor) -> Normalization:
        """``states`` (S,T,C,*spatial), ``params`` (S,P) of the training simulations, ``mask`` (C,*spatial)."""
        c = states.shape[2]
        per_channel = states.transpose(0, 2).reshape(c, -1, *states.shape[3:])
        std = torch.stack([per_channel[i][:, mask[i]].std() for i in range(c)])
        p_std = params.std(0) if len(params) > 1 and params.shape[1] else torch.ones(params.shape[1])
        p_std = torch.where(p_std > 0, p_std, torch.ones_like(p_std))
        return cls(std.clamp_min(1e-8), params.mean(0), p_std)


class CorrectionNet(nn.Module):
    """Additive correction ``C(state, params)`` with normalised inputs and outputs.

    Input channels: the state divided by the training std, plus one constant
    channel per physical parameter holding its normalised value. The output is
    rescaled by the std and zeroed outside the adapter's valid mask.

    Args:
        body: maps ``(B, C+P, *spatial)`` to ``(B, C, *spatial)``.
        normalization: training-set statistics.
        mask: boolean ``(C, *spatial)`` valid mask of the state layout; its
            number of axes fixes the number of spatial axes.
        zero_mean: subtract each channel's spatial mean (over valid entries)
            from the correction, so that it cannot change conserved totals
            (mass in Cahn-Hilliard, momentum in periodic Burgers).
    """

    mask: Tensor

    def __init__(self, body: nn.Module, normalization: Normalization, mask: Tensor, *, zero_mean: bool = False) -> None:
        super().__init__()
        self.body = body
        self.norm = normalization
        self.zero_mean = zero_mean
        self.register_buffer("mask", mask.to(torch.float32))

    @property
    def dim(self) -> int:
        """Spatial axes of the states this network corrects (1, 2 or 3)."""
        return self.mask.dim() - 1

    def layers(self) -> list[tuple[str, nn.Module]]:
        """The body's stages in order, each with the prefix of its parameter names.

        E.g. ``[("body.0.", conv), ("body.1.", activation), ...]``: running
        the stages in order on :meth:`features` gives the body's output, and a
        parameter named ``prefix + "weight"`` belongs to that stage. Feature
        reuse starts at the first stage whose parameters are perturbed.
        """
        if not isinstance(self.body, nn.Sequential):
            return [("body.", self.body)]
        return [(f"body.{name}.", stage) for name, stage in self.body.named_children()]

    def features(self, state: Tensor, params: Tensor) -> Tensor:
        """The body's input ``(B, C+P, *spatial)``."""
        ones = [1] * (state.dim() - 2)
        std = self.norm.state_std.view(1, -1, *ones)
        p = (params.to(state.dtype) - self.norm.param_mean) / self.norm.param_std
        p = p.view(*p.shape, *ones).expand(-1, -1, *state.shape[2:])
        return torch.cat([state / std, p], dim=1)

    def output(self, body_out: Tensor) -> Tensor:
        """Rescale and mask the body's output (and remove its mean if ``zero_mean``)."""
        ones = [1] * (body_out.dim() - 2)
        out = body_out * self.norm.state_std.view(1, -1, *ones) * self.mask
        if self.zero_mean:
            axes = tuple(range(-self.dim, 0))
            mean = out.sum(dim=axes, keepdim=True) / self.mask.sum(dim=axes, keepdim=True)
            out = (out - mean) * self.mask
        return out

    def forward(self, state: Tensor, params: Tensor) -> Tensor:
        return self.output(self.body(self.features(state, params)))
