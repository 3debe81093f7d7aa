"""Gray–Scott reaction–diffusion in NumPy: a black-box scene the estimators were never tuned on.

Two fields ``(u, v)`` on a periodic square, 5-point Laplacian, explicit Euler
(Pearson 1993, "Complex patterns in a simple system", Science 261)::

    u_t = D_u lap(u) - u v^2 + F (1 - u)
    v_t = D_v lap(v) + u v^2 - (F + k) v

The state is ``(B, 2, n, n)``; the parameter is the feed rate ``F`` (one per
batch member). One ``step`` advances one frame of ``frame_time`` time units
with ``substeps`` explicit steps, so a fine grid with many small steps and a
coarse grid with few large ones see the same frames. Pure NumPy: no gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from sciml_zoo_solvers._grid import PeriodicReactionDiffusion2D

__all__ = ["GrayScott", "make_gray_scott_solver"]


class GrayScott(PeriodicReactionDiffusion2D):
    """Gray–Scott on the periodic square of side ``length``.

    Args:
        resolution: ``(n, n)`` cells.
        length: side of the square (space units; cell size ``length / n``).
        frame_time: time units advanced by one ``step``.
        substeps: explicit Euler steps per frame.
        diffusivity: ``(D_u, D_v)``.
        kill: the kill rate ``k`` (the feed rate ``F`` is the parameter).
    """

    name = "gray-scott"
    param_names = ("feed",)

    def __init__(
        self,
        *,
        resolution: tuple[int, int] = (32, 32),
        length: float = 64.0,
        frame_time: float = 10.0,
        substeps: int = 5,
        diffusivity: tuple[float, float] = (0.16, 0.08),
        kill: float = 0.062,
    ) -> None:
        super().__init__(
            resolution=resolution, length=length, frame_time=frame_time, substeps=substeps, diffusivity=diffusivity
        )
        self.kill = float(kill)

    def _rates(self, u: np.ndarray, v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        du, dv = self.diffusivity
        uvv = u * v * v
        return (
            du * self._laplacian(u) - uvv + p * (1.0 - u),
            dv * self._laplacian(v) + uvv - (p + self.kill) * v,
        )

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """``u = 1, v = 0`` with a few random square seeds of ``u = 1/2, v = 1/4`` plus 1% noise."""
        rng = np.random.default_rng(seed)
        out = np.zeros((len(params), 2, self.n, self.n))
        w = max(self.n // 8, 1)
        for b in range(len(params)):
            u, v = np.ones((self.n, self.n)), np.zeros((self.n, self.n))
            for _ in range(4):
                y, x = rng.integers(0, self.n - w, size=2)
                u[y : y + w, x : x + w], v[y : y + w, x : x + w] = 0.5, 0.25
            out[b, 0] = u + 0.01 * rng.standard_normal((self.n, self.n))
            out[b, 1] = v + 0.01 * rng.standard_normal((self.n, self.n))
        return torch.from_numpy(out).float()

    def describe(self) -> dict:
        return {**super().describe(), "kill": self.kill}


def make_gray_scott_solver(**options: object) -> GrayScott:
    """Registry factory for :class:`GrayScott` (keyword options as in the class)."""
    return GrayScott(**options)  # type: ignore[arg-type]
