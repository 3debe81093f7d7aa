"""Complex Ginzburg–Landau equation in 1D, NumPy: a chaotic black-box scene never tuned on.

The amplitude ``A = u + i v`` of an oscillatory medium near a Hopf bifurcation
(Aranson & Kramer 2002, "The world of the complex Ginzburg-Landau equation",
Rev. Mod. Phys. 74, eq. 1), periodic, second-order finite differences, classical
RK4 in time::

    A_t = A + (1 + i b) A_xx - (1 + i c) |A|^2 A

Plane waves are Benjamin–Feir unstable when ``1 + b c < 0``; there the medium is
turbulent (phase or defect turbulence), i.e. chaotic. The state is
``(B, 2, n)`` with channels ``(Re A, Im A)``; the parameter is ``c`` (one per
batch member). One ``step`` advances ``frame_time`` time units in ``substeps``
RK4 steps. No gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo_solvers._grid1d import NumPyLine, rk4_step

__all__ = ["GinzburgLandau", "make_ginzburg_landau_solver"]


class GinzburgLandau(NumPyLine):
    """1D complex Ginzburg–Landau on the periodic interval ``[0, length)``.

    Args:
        resolution: ``(n,)`` cells.
        length: domain length (cell size ``length / n``).
        frame_time: time units per ``step``.
        substeps: RK4 steps per frame.
        dispersion: ``b`` (linear dispersion; ``c`` is the parameter).
    """

    name = "ginzburg-landau"
    param_names = ("c",)

    def __init__(
        self,
        *,
        resolution: tuple[int] = (64,),
        length: float = 64.0,
        frame_time: float = 0.5,
        substeps: int = 5,
        dispersion: float = 2.0,
    ) -> None:
        self._init_line(resolution=resolution, channels=2, length=length, frame_time=frame_time, substeps=substeps)
        self.dispersion = float(dispersion)

    def _rhs(self, a: np.ndarray, c: np.ndarray) -> np.ndarray:
        h = self.length / self.n
        a_xx = (np.roll(a, 1, -1) + np.roll(a, -1, -1) - 2.0 * a) / h**2
        return a + (1.0 + 1j * self.dispersion) * a_xx - (1.0 + 1j * c) * (a * a.conj()).real * a

    def _to_work(self, u: np.ndarray) -> np.ndarray:
        return u[:, 0] + 1j * u[:, 1]  # the complex amplitude A

    def _from_work(self, a: np.ndarray) -> np.ndarray:
        return np.stack([a.real, a.imag], axis=1)

    def _substep(self, a: np.ndarray, c: np.ndarray, dt: float) -> np.ndarray:
        return rk4_step(lambda z: self._rhs(z, c), a, dt)

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Small random noise (amplitude 0.01) about ``A = 0``, which is linearly unstable."""
        rng = np.random.default_rng(seed)
        return torch.from_numpy(0.01 * rng.standard_normal((len(params), 2, self.n))).float()

    def options(self) -> dict[str, Any]:
        return {**super().options(), "dispersion": self.dispersion}


def make_ginzburg_landau_solver(**options: object) -> GinzburgLandau:
    """Registry factory for :class:`GinzburgLandau` (keyword options as in the class)."""
    return GinzburgLandau(**options)  # type: ignore[arg-type]
