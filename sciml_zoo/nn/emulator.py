"""A residual CNN model of one solver step, fitted online by the ``emulator`` estimator.

Frezat et al. 2024 (arXiv 2310.19385) backpropagate through such an emulator
of the solver; :class:`~sciml_zoo.estimators.Emulator` uses it for ``J^T v``
only, while the forward pass runs the true solver.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jvp

from sciml_zoo.nn.networks import sol_cnn

__all__ = ["DTYPES", "PRECISIONS", "StepEmulator", "emulator_dtype"]

PRECISIONS = ("auto", "float32", "float64")
DTYPES = ("float16", "bfloat16", "float32", "float64")


def emulator_dtype(precision: str, state: Tensor) -> str:
    """The dtype's name (``"float64"``) an emulator of steps on ``state`` ``(B, C, *spatial)`` computes in.

    ``"auto"``: float64 for one spatial axis on a CPU, else the state's own. At a
    1D emulator's sizes PyTorch's float32 (oneDNN) convolutions carry a fixed cost
    per call that its native float64 kernels do not: a product or fit step takes
    0.5-0.75x as long in float64; in 2D float32 is 2-7x the faster
    (``benchmarks/emulator_precision.py``).
    """
    if precision == "auto":
        one_axis_cpu = state.dim() == 3 and state.device.type == "cpu"
        return "float64" if one_axis_cpu else str(state.dtype).removeprefix("torch.")
    return precision


class StepEmulator(nn.Module):
    """``E(x, p) = x + s_out * cnn((x - <x>) / s, (<x> - m) / s_m, p_norm)``: a residual CNN model of one step.

    Shapes: ``x`` ``(B, C, *spatial)`` (1-3 spatial axes), ``p`` ``(B, P)``
    physical parameters. ``<x>`` ``(B, C)`` is each member's spatial mean per
    channel: the CNN sees the fluctuations on their own scale ``s`` and the
    level as constant input channels (with the parameters), so a field far
    from zero or a drifting mean (a gauge) does not drown its structure. The
    normalisation buffers ``m, s_m, s, s_out`` ``(C,)`` and ``p_mean, p_std``
    ``(P,)`` are set once from the first pairs (:meth:`calibrate`).
    """

    mean: Tensor
    level_scale: Tensor
    scale: Tensor
    out_scale: Tensor
    p_mean: Tensor
    p_std: Tensor

    def __init__(
        self, channels: int, num_params: int, dim: int, *, width: int, depth: int, kernel_size: int, padding: str
    ) -> None:
        super().__init__()
        self.body = sol_cnn(
            2 * channels + num_params,
            channels,
            dim=dim,
            width=width,
            depth=depth,
            kernel_size=kernel_size,
            activation="gelu",
            padding_mode=padding,
        )
        self.dim = dim
        self.wrap = padding == "circular"  # then padded by an index, not by ``F.pad`` (:meth:`_body`)
        self._wrap_index: dict[tuple[int, int, str], Tensor] = {}
        for name in ("mean", "level_scale", "scale", "out_scale"):
            self.register_buffer(name, torch.zeros(channels) if name == "mean" else torch.ones(channels))
        self.register_buffer("p_mean", torch.zeros(num_params))
        self.register_buffer("p_std", torch.ones(num_params))

    def _per_channel(self, v: Tensor) -> Tensor:
        return v.view(1, -1, *[1] * self.dim)

    @torch.no_grad()
    def calibrate(self, state: Tensor, params: Tensor, output: Tensor) -> None:
        """Set the normalisation from a batch of pairs ``(B, C, *spatial)``."""
        dims = [0, *range(2, state.dim())]
        level = state.mean(dims[1:], keepdim=True)
        self.mean.copy_(level.mean(0).flatten())
        self.scale.copy_((state - level).std(dims).clamp_min(1e-6))
        spread = level.std(0, unbiased=False).flatten() if len(state) > 1 else torch.zeros_like(self.scale)
        self.level_scale.copy_(torch.maximum(spread, self.scale))
        self.out_scale.copy_((output - state).std(dims).clamp_min(1e-6))
        if params.shape[1]:
            self.p_mean.copy_(params.mean(0))
            self.p_std.copy_(params.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, state: Tensor, params: Tensor) -> Tensor:
        """``E(x, p)`` in the emulator's dtype (its buffers'): inputs of another dtype are cast."""
        state, params = state.to(self.scale.dtype), params.to(self.scale.dtype)
        level = state.mean(tuple(range(2, state.dim())), keepdim=True)
        z = (state - level) / self._per_channel(self.scale)
        cond = (level - self._per_channel(self.mean)) / self._per_channel(self.level_scale)
        if params.shape[1]:
            p = ((params - self.p_mean) / self.p_std).view(*params.shape, *[1] * self.dim)
            cond = torch.cat([cond, p], 1)
        z = torch.cat([z, cond.expand(-1, -1, *state.shape[2:])], 1)
        return state + self._per_channel(self.out_scale) * self._body(z)

    def _body(self, z: Tensor) -> Tensor:
        """``self.body(z)``; with circular padding each convolution's input is wrapped by one ``index_select``
        per axis, whose backward (one ``index_add``) costs a fraction of circular ``F.pad``'s slice copies: on a
        small state the product ``J_E^T v``, made at every wrapped step, is mostly such per-operation costs."""
        for layer in self.body:
            wrapped = self.wrap and isinstance(layer, nn.modules.conv._ConvNd)
            z = self._wrapped_conv(layer, z) if wrapped else layer(z)
        return z

    def _wrapped_conv(self, layer: Any, z: Tensor) -> Tensor:
        pad = layer.kernel_size[0] // 2
        for axis in range(2, z.dim()):
            z = z.index_select(axis, self._index(z.shape[axis], pad, z.device))
        return (F.conv1d, F.conv2d, F.conv3d)[self.dim - 1](z, layer.weight, layer.bias)

    def _index(self, n: int, pad: int, device: torch.device) -> Tensor:
        """``[n - pad, ..., n - 1, 0, ..., n - 1, 0, ..., pad - 1]`` (periodic), cached."""
        key = (n, pad, str(device))
        if key not in self._wrap_index:
            self._wrap_index[key] = torch.arange(-pad, n + pad, device=device) % n
        return self._wrap_index[key]

    def output_loss(self, predicted: Tensor, output: Tensor, mask: Tensor | None) -> Tensor:
        """Mean squared error of predicted next states ``(B, C, *spatial)``, per channel in units of ``s_out``."""
        err = (predicted - output.to(predicted.dtype)) / self._per_channel(self.out_scale)
        return (err if mask is None else err * mask.to(err.dtype)).pow(2).mean()

    def tangent_loss(self, state: Tensor, params: Tensor, r: Tensor, jr: Tensor, mask: Tensor | None) -> Tensor:
        """Mean relative squared error of ``J_E r`` against measured ``J r`` (``(N, C, *spatial)`` each).

        The output fit sees states on the trajectory only, where a step that
        damps small scales (diffusion) is smooth; its Jacobian along rough
        directions stays unconstrained. Directional differences along random
        directions constrain exactly those.
        """
        dtype = self.scale.dtype
        jer = jvp(lambda z: self(z, params), (state.to(dtype),), (r.to(dtype),))[1]
        jr = jr.to(dtype)
        err = jer - jr if mask is None else (jer - jr) * mask.to(jr.dtype)
        return (err.flatten(1).pow(2).sum(1) / jr.flatten(1).pow(2).sum(1).clamp_min(1e-30)).mean()
