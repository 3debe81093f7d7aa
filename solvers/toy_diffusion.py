"""A tiny pure-torch advection-diffusion solver on a periodic grid in 1, 2 or 3 dimensions.

Differentiable, batched and fast: the test double of the library (estimator
checks against autograd, black-box guarantees, pipeline smoke tests). The
state is one scalar field ``(B, 1, *spatial)`` with spatial axes ``x``,
``(y, x)`` or ``(z, y, x)``; the parameter is the diffusivity. The fine and
coarse runs differ by their discretisation error, so a correction network has
something real to learn. Restriction is the default block average of
:class:`~sciml_zoo.solver.SolverBase`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sciml_zoo.solver import MAX_SPATIAL_DIMS, Capabilities, SolverBase

__all__ = ["ToyDiffusion", "make_toy_solver"]

DEFAULT_VELOCITY = (1.0, 0.5, 0.25)
"""Advection velocity ``(vx, vy, vz)``; the first ``len(resolution)`` entries are used."""


class ToyDiffusion(SolverBase):
    """Explicit upwind advection + diffusion + a mild cubic reaction, periodic.

    Args:
        resolution: grid cells per axis on the unit-periodic box, ``(nx,)``,
            ``(nx, ny)`` or ``(nx, ny, nz)``; the state's spatial axes are the
            reverse, ``(nz, ny, nx)``.
        dt: time step.
        velocity: constant advection velocity ``(vx, vy, vz)`` (default
            ``(1, 0.5, 0.25)`` cut to the number of axes), each ``>= 0``
            (the upwind stencil assumes non-negative velocity).
    """

    name = "toy-diffusion"
    param_names = ("diffusivity",)

    def __init__(
        self,
        *,
        resolution: tuple[int, ...] = (16, 16),
        dt: float = 0.002,
        velocity: tuple[float, ...] | None = None,
    ) -> None:
        res = tuple(int(r) for r in resolution)
        if not 1 <= len(res) <= MAX_SPATIAL_DIMS or min(res) < 2:
            raise ValueError(f"resolution must be 1 to 3 sizes >= 2, e.g. (16, 16); got {tuple(resolution)}")
        vel = tuple(float(v) for v in (velocity if velocity is not None else DEFAULT_VELOCITY[: len(res)]))
        if len(vel) != len(res) or min(vel) < 0:
            raise ValueError(f"velocity needs {len(res)} non-negative entries (one per axis), got {velocity}")
        self.resolution = res
        self.nx = res[0]
        self.dt = float(dt)
        self.velocity = vel
        self._state_shape = (1, *reversed(res))
        self.capabilities = Capabilities(differentiable=True, batched=True)

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        ndim = len(self.resolution)
        k = params[:, 0].to(state.dtype).view(-1, *[1] * (ndim + 1))
        adv: Tensor | float = 0.0
        lap: Tensor | float = 0.0
        # axis i (x, y, z) is the state's dim -1 - i; rolls give periodic neighbours
        for i, (n, v) in enumerate(zip(self.resolution, self.velocity, strict=True)):
            d = 1.0 / n
            behind, ahead = torch.roll(state, 1, dims=-1 - i), torch.roll(state, -1, dims=-1 - i)
            adv = adv + v * (state - behind) / d  # upwind for non-negative velocity
            lap = lap + (behind + ahead - 2 * state) / d**2
        return state + self.dt * (-adv + k * lap + 0.5 * (state - state**3))

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Smooth random periodic fields ``(B, 1, *spatial)``, one draw per batch member."""
        gen = torch.Generator().manual_seed(seed)
        ndim = len(self.resolution)
        axes = [torch.arange(n) / n for n in self.resolution]  # x, y, z coordinates
        grids = list(reversed(torch.meshgrid(*reversed(axes), indexing="ij"))) if ndim > 1 else [axes[0]]
        x = grids[0]
        y = grids[1] if ndim > 1 else torch.zeros_like(x)
        z = grids[2] if ndim > 2 else torch.zeros_like(x)
        fields = []
        for _ in range(len(params)):
            phase = torch.rand(4 if ndim < 3 else 5, generator=gen) * 2 * torch.pi
            f = torch.sin(2 * torch.pi * x + phase[0])
            if ndim > 1:
                f = f * torch.cos(2 * torch.pi * y + phase[1])
            if ndim > 2:
                f = f * torch.cos(2 * torch.pi * z + phase[4])
            f = (
                f
                + 0.5 * torch.sin(4 * torch.pi * (x + y + z) + phase[2])
                + 0.3 * torch.cos(6 * torch.pi * x + phase[3])
            )
            fields.append(f)
        return torch.stack(fields)[:, None].float()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "resolution": list(self.resolution),
            "dt": self.dt,
            "velocity": list(self.velocity),
        }


def make_toy_solver(*, resolution: tuple[int, ...] = (16, 16), dt: float = 0.002, **options: object) -> ToyDiffusion:
    """Registry factory for :class:`ToyDiffusion` (1, 2 or 3 axes from ``resolution``)."""
    return ToyDiffusion(resolution=resolution, dt=dt, **options)  # type: ignore[arg-type]
