"""Brusselator reaction–diffusion in 2D, NumPy: a black-box scene never tuned on.

Prigogine and Lefever's autocatalytic model (J. Chem. Phys. 48, 1968) with
diffusion, on a periodic square, 5-point Laplacian, explicit Euler::

    u_t = D_u lap(u) + a - (b + 1) u + u^2 v
    v_t = D_v lap(v) + b u - u^2 v

The homogeneous state ``(a, b / a)`` loses stability to oscillations at
``b = 1 + a^2`` (Hopf) and to stationary patterns at ``b = (1 + a sqrt(D_u / D_v))^2``
(Turing); the parameter ``b`` (one per batch member) spans both. The state is
``(B, 2, n, n)``. One ``step`` advances ``frame_time`` time units in ``substeps``
explicit steps. No gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sciml_zoo.solver import Capabilities, SolverBase
from sciml_zoo_solvers._grid import periodic_laplacian_2d

__all__ = ["Brusselator", "make_brusselator_solver"]


class Brusselator(SolverBase):
    """2D Brusselator on the periodic square of side ``length``.

    Args:
        resolution: ``(n, n)`` cells.
        length: side of the square (cell size ``length / n``).
        frame_time: time units per ``step``.
        substeps: explicit Euler steps per frame.
        diffusivity: ``(D_u, D_v)``.
        a: the feed constant (``b`` is the parameter).
    """

    name = "brusselator"
    param_names = ("b",)
    capabilities = Capabilities(differentiable=False, batched=True)

    def __init__(
        self,
        *,
        resolution: tuple[int, int] = (32, 32),
        length: float = 32.0,
        frame_time: float = 0.5,
        substeps: int = 10,
        diffusivity: tuple[float, float] = (1.0, 4.0),
        a: float = 1.0,
    ) -> None:
        if resolution[0] != resolution[1]:
            raise ValueError(f"resolution={tuple(resolution)}: the Brusselator square needs n x n cells")
        self.n = int(resolution[0])
        self.length = float(length)
        self.frame_time = float(frame_time)
        self.substeps = int(substeps)
        self.diffusivity = (float(diffusivity[0]), float(diffusivity[1]))
        self.a = float(a)
        self._state_shape = (2, self.n, self.n)

    def _laplacian(self, f: np.ndarray) -> np.ndarray:
        return periodic_laplacian_2d(f, self.length / self.n)

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        s = state.detach().cpu().numpy().astype(np.float64)
        u, v = s[:, 0], s[:, 1]
        b = params.detach().cpu().numpy().astype(np.float64)[:, 0].reshape(-1, 1, 1)
        dt = self.frame_time / self.substeps
        du, dv = self.diffusivity
        for _ in range(self.substeps):
            uuv = u * u * v
            u, v = (
                u + dt * (du * self._laplacian(u) + self.a - (b + 1.0) * u + uuv),
                v + dt * (dv * self._laplacian(v) + b * u - uuv),
            )
        return torch.from_numpy(np.stack([u, v], axis=1)).to(state.dtype)

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """The homogeneous state ``(a, b / a)`` plus 10% random noise in each field."""
        rng = np.random.default_rng(seed)
        b = params.detach().cpu().numpy().astype(np.float64)[:, 0]
        out = np.empty((len(params), 2, self.n, self.n))
        out[:, 0] = self.a
        out[:, 1] = (b / self.a)[:, None, None]
        out *= 1.0 + 0.1 * rng.standard_normal(out.shape)
        return torch.from_numpy(out).float()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "resolution": [self.n, self.n],
            "length": self.length,
            "frame_time": self.frame_time,
            "substeps": self.substeps,
            "diffusivity": list(self.diffusivity),
            "a": self.a,
        }


def make_brusselator_solver(**options: object) -> Brusselator:
    """Registry factory for :class:`Brusselator` (keyword options as in the class)."""
    return Brusselator(**options)  # type: ignore[arg-type]
