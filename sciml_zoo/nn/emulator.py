"""A residual CNN model of one solver step, fitted online by the ``emulator`` estimator.

Frezat et al. 2024 (arXiv 2310.19385) backpropagate through such an emulator
of the solver; :class:`~sciml_zoo.estimators.Emulator` uses it for ``J^T v``
only, while the forward pass runs the true solver.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sciml_zoo.nn.networks import sol_cnn

__all__ = ["StepEmulator"]


class StepEmulator(nn.Module):
    """``E(x, p) = x + s_out * cnn((x - m) / s, p_norm)``: a residual CNN model of one solver step.

    Shapes: ``x`` ``(B, C, *spatial)`` (1-3 spatial axes), ``p`` ``(B, P)``
    physical parameters (broadcast as constant input channels). The
    normalisation buffers ``m, s, s_out`` ``(C,)`` and ``p_mean, p_std``
    ``(P,)`` are set once from the first pairs (:meth:`calibrate`).
    """

    mean: Tensor
    scale: Tensor
    out_scale: Tensor
    p_mean: Tensor
    p_std: Tensor

    def __init__(
        self, channels: int, num_params: int, dim: int, *, width: int, depth: int, kernel_size: int, padding: str
    ) -> None:
        super().__init__()
        self.body = sol_cnn(
            channels + num_params,
            channels,
            dim=dim,
            width=width,
            depth=depth,
            kernel_size=kernel_size,
            activation="gelu",
            padding_mode=padding,
        )
        self.dim = dim
        for name, size in (("mean", channels), ("scale", channels), ("out_scale", channels)):
            self.register_buffer(name, torch.zeros(size) if name == "mean" else torch.ones(size))
        self.register_buffer("p_mean", torch.zeros(num_params))
        self.register_buffer("p_std", torch.ones(num_params))

    def _per_channel(self, v: Tensor) -> Tensor:
        return v.view(1, -1, *[1] * self.dim)

    @torch.no_grad()
    def calibrate(self, state: Tensor, params: Tensor, output: Tensor) -> None:
        """Set the normalisation from a batch of pairs ``(B, C, *spatial)``."""
        dims = [0, *range(2, state.dim())]
        self.mean.copy_(state.mean(dims))
        self.scale.copy_(state.std(dims).clamp_min(1e-6))
        self.out_scale.copy_((output - state).std(dims).clamp_min(1e-6))
        if params.shape[1]:
            self.p_mean.copy_(params.mean(0))
            self.p_std.copy_(params.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, state: Tensor, params: Tensor) -> Tensor:
        z = (state - self._per_channel(self.mean)) / self._per_channel(self.scale)
        if params.shape[1]:
            cond = ((params - self.p_mean) / self.p_std).view(*params.shape, *[1] * self.dim)
            z = torch.cat([z, cond.expand(-1, -1, *state.shape[2:])], 1)
        return state + self._per_channel(self.out_scale) * self.body(z)
