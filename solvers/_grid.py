"""Shared pieces of the NumPy adapters: the periodic 5-point Laplacian and a
two-field explicit-Euler reaction–diffusion step on a periodic square."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo.solver import Capabilities, SolverBase

__all__ = ["periodic_laplacian_2d", "PeriodicReactionDiffusion2D"]


def periodic_laplacian_2d(f: np.ndarray, h: float) -> np.ndarray:
    """5-point Laplacian of ``f (..., ny, nx)`` on a periodic grid of spacing ``h``."""
    return (np.roll(f, 1, -1) + np.roll(f, -1, -1) + np.roll(f, 1, -2) + np.roll(f, -1, -2) - 4.0 * f) / h**2


class PeriodicReactionDiffusion2D(SolverBase):
    """Two fields ``(u, v)`` on a periodic ``n x n`` square, explicit Euler.

    The state is ``(B, 2, n, n)``; the one parameter per batch member reaches
    :meth:`_rates` as a ``(B, 1, 1)`` array. One ``step`` advances
    ``frame_time`` time units in ``substeps`` explicit steps. Subclasses set
    ``name`` and ``param_names`` and give the rates (diffusion included).
    """

    capabilities = Capabilities(differentiable=False, batched=True)

    def __init__(
        self,
        *,
        resolution: tuple[int, int],
        length: float,
        frame_time: float,
        substeps: int,
        diffusivity: tuple[float, float],
    ) -> None:
        if resolution[0] != resolution[1]:
            raise ValueError(f"resolution={tuple(resolution)}: the {self.name} square needs n x n cells")
        self.n = int(resolution[0])
        self.length = float(length)
        self.frame_time = float(frame_time)
        self.substeps = int(substeps)
        self.diffusivity = (float(diffusivity[0]), float(diffusivity[1]))
        self._state_shape = (2, self.n, self.n)

    def _laplacian(self, f: np.ndarray) -> np.ndarray:
        return periodic_laplacian_2d(f, self.length / self.n)

    def _rates(self, u: np.ndarray, v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(u_t, v_t)`` at ``u, v (B, n, n)`` with the parameter ``p (B, 1, 1)``."""
        raise NotImplementedError

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        s = state.detach().cpu().numpy().astype(np.float64)
        u, v = s[:, 0], s[:, 1]
        p = params.detach().cpu().numpy().astype(np.float64)[:, 0].reshape(-1, 1, 1)
        dt = self.frame_time / self.substeps
        for _ in range(self.substeps):
            u_t, v_t = self._rates(u, v, p)
            u, v = u + dt * u_t, v + dt * v_t
        return torch.from_numpy(np.stack([u, v], axis=1)).to(state.dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resolution": [self.n, self.n],
            "length": self.length,
            "frame_time": self.frame_time,
            "substeps": self.substeps,
            "diffusivity": list(self.diffusivity),
        }
