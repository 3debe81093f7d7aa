"""A tiny pure-torch advection-diffusion solver on a periodic grid.

Differentiable, batched and fast: the test double of the library (estimator
checks against autograd, black-box guarantees, pipeline smoke tests). The
state is one scalar field ``(B, 1, H, W)``; the parameter is the diffusivity.
The fine and coarse runs differ by their discretisation error, so a correction
network has something real to learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sciml_zoo.solver import Capabilities, SolverBase, block_average

__all__ = ["ToyDiffusion", "make_toy_solver"]


class ToyDiffusion(SolverBase):
    """Explicit upwind advection + diffusion + a mild cubic reaction, periodic.

    Args:
        resolution: ``(nx, ny)`` grid cells on the unit-periodic square
            ``[0, 1)^2`` (``ny`` rows, ``nx`` columns).
        dt: time step.
        velocity: constant advection velocity ``(vx, vy)``.
    """

    name = "toy-diffusion"
    param_names = ("diffusivity",)

    def __init__(
        self,
        *,
        resolution: tuple[int, int] = (16, 16),
        dt: float = 0.002,
        velocity: tuple[float, float] = (1.0, 0.5),
    ) -> None:
        self.nx, self.ny = int(resolution[0]), int(resolution[1])
        self.dt = float(dt)
        self.velocity = (float(velocity[0]), float(velocity[1]))
        self._state_shape = (1, self.ny, self.nx)
        self.capabilities = Capabilities(differentiable=True, batched=True, step_cost_s=1e-4)

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        dx, dy = 1.0 / self.nx, 1.0 / self.ny
        k = params[:, 0].to(state.dtype).view(-1, 1, 1, 1)
        padded = F.pad(state, (1, 1, 1, 1), mode="circular")
        c = padded[..., 1:-1, 1:-1]
        left, right = padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]
        down, up = padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]
        vx, vy = self.velocity
        adv = vx * (c - left) / dx + vy * (c - down) / dy  # upwind for positive velocity
        lap = (left + right - 2 * c) / dx**2 + (up + down - 2 * c) / dy**2
        return state + self.dt * (-adv + k * lap + 0.5 * (c - c**3))

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        y = torch.arange(self.ny).view(-1, 1) / self.ny
        x = torch.arange(self.nx).view(1, -1) / self.nx
        fields = []
        for _ in range(len(params)):
            phase = torch.rand(4, generator=gen) * 2 * torch.pi
            f = (
                torch.sin(2 * torch.pi * x + phase[0]) * torch.cos(2 * torch.pi * y + phase[1])
                + 0.5 * torch.sin(4 * torch.pi * (x + y) + phase[2])
                + 0.3 * torch.cos(6 * torch.pi * x + phase[3])
            )
            fields.append(f)
        return torch.stack(fields)[:, None].float()

    def downsample(self, state: Tensor, factor: int) -> Tensor:
        return block_average(state, factor)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "resolution": [self.nx, self.ny],
            "dt": self.dt,
            "velocity": list(self.velocity),
        }


def make_toy_solver(*, resolution: tuple[int, int] = (16, 16), dt: float = 0.002, **options: object) -> ToyDiffusion:
    """Registry factory for :class:`ToyDiffusion`."""
    return ToyDiffusion(resolution=resolution, dt=dt, **options)  # type: ignore[arg-type]
