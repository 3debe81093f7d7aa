"""Two-scale Lorenz-96 in NumPy: a chaotic black-box scene never tuned on.

The reference resolves ``K`` slow variables ``X_k`` and ``J`` fast variables
``Y_{j,k}`` per slow one (Lorenz 1996; the parametrisation benchmark of Wilks
2005 and Arnold et al. 2013, Q. J. R. Meteorol. Soc. 139)::

    dX_k/dt     = -X_{k-1} (X_{k-2} - X_{k+1}) - X_k + F - (h c / b) sum_j Y_{j,k}
    dY_{j,k}/dt = -c b Y_{j+1,k} (Y_{j+2,k} - Y_{j-1,k}) - c Y_{j,k} + (h c / b) X_k

with periodic ``k`` and the fast chain periodic over all ``J K`` entries. The
cheap source model drops the fast scale (``fast_per_slow = 0``): the learned
correction must stand in for the coupling term, the classic closure problem.
Both integrate with classical RK4, ``substeps`` steps per frame.

State ``(B, 1 + J, K)``: channel 0 holds ``X``, channels ``1..J`` hold ``Y``
(``Y[:, j, k] = Y_{j,k}``); the source state is ``(B, 1, K)``. ``restrict``
keeps channel 0 (block-averaged onto a coarser ``K'`` if asked). No gradients, no physical parameters (held-out initial
conditions make the test split).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo_solvers._grid1d import NumPyLine, rk4_step

__all__ = ["Lorenz96", "make_lorenz96_solver"]


class Lorenz96(NumPyLine):
    """Lorenz-96, one-scale (``fast_per_slow = 0``) or two-scale.

    Args:
        resolution: ``(K,)`` slow variables.
        fast_per_slow: ``J`` fast variables per slow one (0: the one-scale model).
        forcing: ``F``. coupling: ``h``. time_scale: ``c``. amplitude_scale: ``b``.
        frame_time: model time units per ``step``.
        substeps: RK4 steps per frame.
    """

    name = "lorenz96"
    param_names = ()

    def __init__(
        self,
        *,
        resolution: tuple[int] = (8,),
        fast_per_slow: int = 0,
        forcing: float = 20.0,
        coupling: float = 1.0,
        time_scale: float = 10.0,
        amplitude_scale: float = 10.0,
        frame_time: float = 0.05,
        substeps: int = 10,
    ) -> None:
        self.k = int(resolution[0])
        self.j = int(fast_per_slow)
        if self.k < 4 or self.j < 0 or substeps < 1 or frame_time <= 0:
            raise ValueError(
                f"lorenz96 needs resolution >= (4,), fast_per_slow >= 0, substeps >= 1 and frame_time > 0; "
                f"got {resolution}, {fast_per_slow}, {substeps}, {frame_time}"
            )
        self.forcing, self.h, self.c, self.b = (
            float(forcing),
            float(coupling),
            float(time_scale),
            float(amplitude_scale),
        )
        self.frame_time, self.substeps = float(frame_time), int(substeps)
        self.n = self.k
        self._state_shape = (1 + self.j, self.k)

    def _tendency(self, z: np.ndarray) -> np.ndarray:
        """``dz/dt`` of ``z = [X | Y]`` (B, K + K J), ``Y`` ordered ``j`` fastest within ``k``."""
        x, y = z[:, : self.k], z[:, self.k :]
        dx = -np.roll(x, 1, -1) * (np.roll(x, 2, -1) - np.roll(x, -1, -1)) - x + self.forcing
        if not self.j:
            return dx
        coupling = self.h * self.c / self.b
        dx = dx - coupling * y.reshape(len(y), self.k, self.j).sum(-1)
        dy = (
            -self.c * self.b * np.roll(y, -1, -1) * (np.roll(y, -2, -1) - np.roll(y, 1, -1))
            - self.c * y
            + coupling * np.repeat(x, self.j, axis=-1)
        )
        return np.concatenate([dx, dy], axis=1)

    def _to_work(self, s: np.ndarray) -> np.ndarray:
        """``z = [X | Y]`` (B, K + K J) from the state (B, 1 + J, K)."""
        return np.concatenate([s[:, 0], s[:, 1:].transpose(0, 2, 1).reshape(len(s), -1)], axis=1)

    def _from_work(self, z: np.ndarray) -> np.ndarray:
        y = z[:, self.k :].reshape(len(z), self.k, self.j).transpose(0, 2, 1)
        return np.concatenate([z[:, None, : self.k], y], axis=1)

    def _substep(self, z: np.ndarray, p: np.ndarray, dt: float) -> np.ndarray:
        return rk4_step(self._tendency, z, dt)  # classical RK4; no physical parameter

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """``X_k = F / 4`` plus unit noise, small random ``Y``; burn-in reaches the attractor."""
        rng = np.random.default_rng(seed)
        n = len(params)
        out = np.zeros((n, 1 + self.j, self.k))
        out[:, 0] = self.forcing / 4.0 + rng.standard_normal((n, self.k))
        out[:, 1:] = 0.1 * rng.standard_normal((n, self.j, self.k))
        return torch.from_numpy(out).float()

    def restrict(self, state: Tensor, resolution: tuple[int, ...]) -> Tensor:
        """Keep the slow variables, block-averaged onto ``resolution``: ``(B, 1 + J, K) -> (B, 1, K')``.

        The fast variables are what the source model does not resolve, so the
        reference restricts onto the one-scale state at any ``K'`` dividing ``K``.
        """
        return super().restrict(state[:, :1], resolution)

    def options(self) -> dict[str, Any]:
        return {
            "fast_per_slow": self.j,
            "forcing": self.forcing,
            "coupling": self.h,
            "time_scale": self.c,
            "amplitude_scale": self.b,
            "frame_time": self.frame_time,
            "substeps": self.substeps,
        }


def make_lorenz96_solver(**options: object) -> Lorenz96:
    """Registry factory for :class:`Lorenz96` (keyword options as in the class)."""
    return Lorenz96(**options)  # type: ignore[arg-type]
