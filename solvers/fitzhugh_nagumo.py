"""FitzHugh–Nagumo excitable medium in 1D, NumPy: a black-box scene never tuned on.

Two fields, the fast voltage ``v`` and the slow recovery ``w``, on ``[0, length]``
with no-flux (Neumann) ends, second-order finite differences, explicit Euler::

    v_t = D v_xx + v - v^3 / 3 - w + I
    w_t = eps (v + a - b w)

With ``I = 0.5`` every point oscillates, so waves are emitted, travel, collide
and annihilate for ever. The state is ``(B, 2, n)``; the parameter is the
recovery rate ``eps`` (one per batch member). One ``step`` advances
``frame_time`` time units in ``substeps`` explicit steps. No gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo_solvers._grid1d import NumPyLine

__all__ = ["FitzHughNagumo", "make_fitzhugh_nagumo_solver"]


class FitzHughNagumo(NumPyLine):
    """1D FitzHugh–Nagumo with no-flux ends.

    Args:
        resolution: ``(n,)`` cells.
        length: domain length (cell size ``length / n``).
        frame_time: time units per ``step``.
        substeps: explicit Euler steps per frame.
        diffusivity: ``D``. current: ``I``. a, b: recovery constants.
    """

    name = "fitzhugh-nagumo"
    param_names = ("eps",)

    def __init__(
        self,
        *,
        resolution: tuple[int] = (64,),
        length: float = 100.0,
        frame_time: float = 1.0,
        substeps: int = 2,
        diffusivity: float = 1.0,
        current: float = 0.5,
        a: float = 0.7,
        b: float = 0.8,
    ) -> None:
        self._init_line(resolution=resolution, channels=2, length=length, frame_time=frame_time, substeps=substeps)
        self.diffusivity = float(diffusivity)
        self.current, self.a, self.b = float(current), float(a), float(b)

    def _vxx(self, v: np.ndarray) -> np.ndarray:
        h = self.length / self.n
        padded = np.concatenate([v[:, :1], v, v[:, -1:]], axis=1)  # mirror ghost cells: no flux
        return (padded[:, 2:] - 2.0 * v + padded[:, :-2]) / h**2

    def _substep(self, u: np.ndarray, eps: np.ndarray, dt: float) -> np.ndarray:
        v, w = u[:, 0], u[:, 1]
        return np.stack(
            [
                v + dt * (self.diffusivity * self._vxx(v) + v - v**3 / 3.0 - w + self.current),
                w + dt * eps * (v + self.a - self.b * w),
            ],
            axis=1,
        )

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Rest state plus three random smooth bumps of ``v`` per member."""
        rng = np.random.default_rng(seed)
        x = (np.arange(self.n) + 0.5) * self.length / self.n
        out = np.zeros((len(params), 2, self.n))
        for i in range(len(params)):
            v = np.full(self.n, -1.2)
            for _ in range(3):
                centre, width = rng.uniform(0, self.length), rng.uniform(2.0, 6.0)
                v += 2.5 * np.exp(-(((x - centre) / width) ** 2))
            out[i, 0], out[i, 1] = v, -0.6 + 0.1 * rng.standard_normal()
        return torch.from_numpy(out).float()

    def options(self) -> dict[str, Any]:
        return {**super().options(), "diffusivity": self.diffusivity, "current": self.current, "a": self.a, "b": self.b}


def make_fitzhugh_nagumo_solver(**options: object) -> FitzHughNagumo:
    """Registry factory for :class:`FitzHughNagumo` (keyword options as in the class)."""
    return FitzHughNagumo(**options)  # type: ignore[arg-type]
