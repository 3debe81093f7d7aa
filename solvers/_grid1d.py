"""Shared frame of the 1D NumPy adapters: float64 inside, substeps per frame, the caller's dtype outside.

The 2D reaction–diffusion adapters share :mod:`sciml_zoo_solvers._grid`; the
1D ones (FitzHugh–Nagumo, complex Ginzburg–Landau, shallow water, Lorenz-96)
share this module, kept apart so that their changes do not touch the 2D
adapters' code fingerprints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from sciml_zoo.solver import Capabilities, SolverBase

__all__ = ["NumPyLine", "rk4_step"]


def rk4_step(rate: Callable[[Any], Any], z: Any, dt: float) -> Any:
    """One classical Runge–Kutta (RK4) step of ``dz/dt = rate(z)``."""
    k1 = rate(z)
    k2 = rate(z + 0.5 * dt * k1)
    k3 = rate(z + 0.5 * dt * k2)
    k4 = rate(z + dt * k3)
    return z + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


class NumPyLine(SolverBase):
    """A NumPy adapter on ``n`` cells of a line: states ``(B, C, n)``, computed in float64.

    One :meth:`step` advances ``frame_time`` time units in ``substeps`` steps
    of :meth:`_substep`, on a working form of the state (:meth:`_to_work`, e.g.
    a complex amplitude) that goes back to ``(B, C, n)`` at the end of the
    frame (:meth:`_from_work`); the result has the input's dtype. The first
    physical parameter of each member reaches :meth:`_substep` as ``(B, 1)``
    (``(B, 0)`` for an adapter without parameters). Subclasses set ``name``,
    ``param_names``, ``n``, ``frame_time``, ``substeps`` and ``_state_shape``
    (:meth:`_init_line` does for a domain of a given ``length``) and give
    :meth:`_substep`; :meth:`describe` lists :meth:`options`.
    """

    capabilities = Capabilities(differentiable=False, batched=True)
    errstate: ClassVar[dict[str, str]] = {}
    """NumPy floating-point error handling inside :meth:`step` (``np.errstate`` keywords)."""
    n: int
    length: float
    frame_time: float
    substeps: int

    def _init_line(
        self, *, resolution: tuple[int, ...], channels: int, length: float, frame_time: float, substeps: int
    ) -> None:
        self.n = int(resolution[0])
        self.length = float(length)
        self.frame_time = float(frame_time)
        self.substeps = int(substeps)
        self._state_shape = (channels, self.n)

    def _to_work(self, u: np.ndarray) -> Any:
        """The state ``(B, C, n)`` in the form :meth:`_substep` works on (default: itself)."""
        return u

    def _from_work(self, w: Any) -> np.ndarray:
        """Back to ``(B, C, n)`` (default: itself)."""
        return np.asarray(w)

    def _substep(self, w: Any, p: np.ndarray, dt: float) -> Any:
        """One time step of ``dt`` of the working state ``w`` with parameters ``p`` (B, 1)."""
        raise NotImplementedError

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        u = state.detach().cpu().numpy().astype(np.float64)
        p = params.detach().cpu().numpy().astype(np.float64)[:, :1]  # (B, 1): broadcasts over x
        dt = self.frame_time / self.substeps
        w = self._to_work(u)
        with np.errstate(**self.errstate):  # type: ignore[arg-type]
            for _ in range(self.substeps):
                w = self._substep(w, p, dt)
        return torch.from_numpy(self._from_work(w)).to(state.dtype)

    def options(self) -> dict[str, Any]:
        """The adapter's options after ``name`` and ``resolution`` in :meth:`describe`."""
        return {"length": self.length, "frame_time": self.frame_time, "substeps": self.substeps}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "resolution": [self.n], **self.options()}
