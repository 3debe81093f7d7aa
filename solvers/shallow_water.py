"""1D shallow-water (Saint-Venant) equations, NumPy finite volumes: an untuned black-box scene.

Conservation laws for the depth ``h`` and discharge ``q = h u`` over a flat
bottom (LeVeque 2002, "Finite Volume Methods for Hyperbolic Problems", §13)::

    h_t + q_x = 0,    q_t + (q^2 / h + g h^2 / 2)_x = 0

Smooth waves steepen into bores (shocks), so a coarse first-order scheme loses
them to numerical diffusion. Two schemes, as a cheap and an accurate code:

* ``order=1``: Rusanov (local Lax–Friedrichs) flux, forward Euler;
* ``order=2``: MUSCL reconstruction with minmod-limited slopes of ``(h, q)``,
  Rusanov flux, SSP-RK2 (Heun) in time (LeVeque §6.9, §10.4; Gottlieb & Shu 1998).

Both are conservative on the periodic interval, so ``sum h`` and ``sum q`` are
exact invariants, and cell averages restrict by block averaging (the
default :meth:`restrict`). The state is ``(B, 2, n)`` with channels ``(h, q)``;
the parameter is the gravity ``g`` (one per batch member), which sets the wave
speed ``sqrt(g h)``. One ``step`` advances ``frame_time`` time units in
``substeps`` equal steps. A depth that is not positive makes the wave speed NaN
and the step returns NaN, as a real code would: the trainer counts it as a fault.
No gradients.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from sciml_zoo_solvers._grid1d import NumPyLine

__all__ = ["ShallowWater", "make_shallow_water_solver"]


def _minmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(a * b > 0.0, np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0)


class ShallowWater(NumPyLine):
    """1D shallow water on the periodic interval ``[0, length)``, flat bottom.

    Args:
        resolution: ``(n,)`` cells.
        length: domain length (cell size ``length / n``).
        frame_time: time units per ``step``.
        substeps: time steps per frame (keep ``(|u| + sqrt(g h)) dt / dx`` below about 0.5).
        order: 1 (Rusanov, forward Euler) or 2 (MUSCL-minmod, SSP-RK2).
    """

    name = "shallow-water"
    param_names = ("g",)
    errstate: ClassVar[dict[str, str]] = {"invalid": "ignore", "divide": "ignore", "over": "ignore"}

    def __init__(
        self,
        *,
        resolution: tuple[int] = (64,),
        length: float = 64.0,
        frame_time: float = 1.0,
        substeps: int = 4,
        order: int = 1,
    ) -> None:
        if int(order) not in (1, 2):
            raise ValueError(f"order={order!r} is not supported; use 1 (Rusanov) or 2 (MUSCL-minmod)")
        self._init_line(resolution=resolution, channels=2, length=length, frame_time=frame_time, substeps=substeps)
        self.order = int(order)

    @staticmethod
    def _flux(u: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Physical flux ``(B, 2, n)`` and the largest wave speed ``(B, n)`` of states ``u``."""
        h, q = u[:, 0], u[:, 1]
        vel = q / h
        speed = np.abs(vel) + np.sqrt(g * h)
        return np.stack([q, q * vel + 0.5 * g * h * h], axis=1), speed

    def _rate(self, u: np.ndarray, g: np.ndarray) -> np.ndarray:
        """``-(F_{i+1/2} - F_{i-1/2}) / dx`` with Rusanov interface fluxes."""
        if self.order == 2:
            slope = _minmod(u - np.roll(u, 1, -1), np.roll(u, -1, -1) - u)
            left, right = u + 0.5 * slope, np.roll(u - 0.5 * slope, -1, -1)  # at i + 1/2
        else:
            left, right = u, np.roll(u, -1, -1)
        f_left, s_left = self._flux(left, g)
        f_right, s_right = self._flux(right, g)
        a = np.maximum(s_left, s_right)[:, None]
        face = 0.5 * (f_left + f_right) - 0.5 * a * (right - left)
        return -(face - np.roll(face, 1, -1)) / (self.length / self.n)

    def _substep(self, u: np.ndarray, g: np.ndarray, dt: float) -> np.ndarray:
        if self.order == 2:  # SSP-RK2
            mid = u + dt * self._rate(u, g)
            return 0.5 * (u + mid + dt * self._rate(mid, g))
        return u + dt * self._rate(u, g)

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Depth ``1 + 0.25 * eta`` and discharge ``0.1 * xi`` from random modes ``k = 1..4``.

        ``eta`` and ``xi`` are sums of cosines with ``N(0, 1/k)`` amplitudes and
        uniform phases, each scaled to a maximum modulus of one.
        """
        rng = np.random.default_rng(seed)
        x = np.arange(self.n) / self.n
        k = np.arange(1, 5)[:, None]

        def field() -> np.ndarray:
            amp = rng.standard_normal((len(params), 4, 1)) / k
            phase = rng.uniform(0.0, 2 * np.pi, (len(params), 4, 1))
            f = (amp * np.cos(2 * np.pi * k * x + phase)).sum(1)
            return f / np.abs(f).max(axis=-1, keepdims=True)

        h, q = 1.0 + 0.25 * field(), 0.1 * field()
        return torch.from_numpy(np.stack([h, q], axis=1)).float()

    def options(self) -> dict[str, Any]:
        return {**super().options(), "order": self.order}


def make_shallow_water_solver(**options: object) -> ShallowWater:
    """Registry factory for :class:`ShallowWater` (keyword options as in the class)."""
    return ShallowWater(**options)  # type: ignore[arg-type]
