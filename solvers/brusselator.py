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

from sciml_zoo_solvers._grid import PeriodicReactionDiffusion2D

__all__ = ["Brusselator", "make_brusselator_solver"]


class Brusselator(PeriodicReactionDiffusion2D):
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
        super().__init__(
            resolution=resolution, length=length, frame_time=frame_time, substeps=substeps, diffusivity=diffusivity
        )
        self.a = float(a)

    def _rates(self, u: np.ndarray, v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        du, dv = self.diffusivity
        uuv = u * u * v
        return (
            du * self._laplacian(u) + self.a - (p + 1.0) * u + uuv,
            dv * self._laplacian(v) + p * u - uuv,
        )

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
        return {**super().describe(), "a": self.a}


def make_brusselator_solver(**options: object) -> Brusselator:
    """Registry factory for :class:`Brusselator` (keyword options as in the class)."""
    return Brusselator(**options)  # type: ignore[arg-type]
