"""Cahn–Hilliard phase separation through py-pde, as a black-box adapter.

The equation (py-pde's :class:`pde.CahnHilliardPDE`, Cahn & Hilliard 1958)

.. math::
    \\partial_t c = \\nabla^2 \\left(c^3 - c - \\gamma \\nabla^2 c\\right)

evolves a composition ``c`` in ``[-1, 1]`` on the periodic square
``[0, length)^2``; ``gamma`` (py-pde calls it ``interface_width``) is the
squared width of the interface between the two phases, in length units². A
uniform mixture with small noise separates into domains that then coarsen.

Why it is a useful scene: the coarse grid (``dx = 1`` at the defaults)
barely resolves the interfaces (width ``sqrt(gamma)``), so a coarse run drifts
from the downsampled fine run — a real, parameter-dependent error for a
correction network conditioned on ``gamma`` to learn. py-pde compiles its
stepper with numba and offers no gradients, so the adapter is black-box only.

Design:
    * ``gamma`` is carried as a second, constant py-pde field of the state
      (its evolution rate is zero), so **one** numba compilation per grid serves
      every parameter value; a parameter baked into the compiled closure would
      cost a fresh 5–20 s compilation per value. Compiled steppers are cached
      per grid for the whole process (see :func:`_compiled_stepper`).
    * One ``step`` (duration ``dt``) is ``n_inner`` explicit Euler steps of
      py-pde's :class:`pde.EulerSolver`; the inner step is fixed by the grid and
      ``max_interface_width`` (not by the state or the batch), so results are
      deterministic and independent of how samples are batched.

State ``(B, 1, ny, nx)`` float32 (the composition ``c``); params ``(B, 1)``
(``gamma``, ``0 < gamma <= max_interface_width``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo.errors import SolverError
from sciml_zoo.solver import Capabilities, SolverBase

__all__ = ["CahnHilliardSolver", "make_cahn_hilliard_solver"]

_SAFETY = 0.4  # fraction of the explicit-Euler stability limit used for the inner step


def _import_pde() -> Any:
    try:
        import pde
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SolverError(
            "the pypde-cahn-hilliard solver needs py-pde; install it with pip install 'sciml-zoo[pypde]'"
        ) from exc
    return pde


@functools.lru_cache(maxsize=1)
def _parametric_pde_class() -> type:
    """Build (once) a py-pde PDE class whose ``gamma`` is a constant state field."""
    pde = _import_pde()
    from pde.pdes.base import PDEBase

    class ParametricCahnHilliardPDE(PDEBase):
        """Cahn–Hilliard on the field collection ``[c, gamma]`` (gamma stays constant)."""

        explicit_time_dependence = False

        def evolution_rate(self, state: Any, t: float = 0) -> Any:  # numpy reference
            c, gamma = state
            mu = c**3 - c - gamma * c.laplace("periodic")
            return pde.FieldCollection([mu.laplace("periodic"), pde.ScalarField(c.grid, 0.0)])

        def make_evolution_rate(self, state: Any, backend: Any) -> Any:
            laplace = state.grid.make_operator("laplace", bc="periodic", backend=backend)

            def rhs(data: np.ndarray, t: float = 0) -> np.ndarray:
                c = data[0]
                out = np.zeros_like(data)
                out[0] = laplace(c**3 - c - data[1] * laplace(c))
                return out

            return rhs

    return ParametricCahnHilliardPDE


@functools.lru_cache(maxsize=8)
def _compiled_stepper(nx: int, ny: int, length: float, inner_dt: float, backend: str) -> tuple[Any, Any]:
    """Return ``(work_field, stepper)`` for one grid; compiled once per process.

    ``stepper(field, t0, t1)`` advances ``field`` in place by
    ``round((t1 - t0) / inner_dt)`` Euler steps inside compiled code.
    """
    pde = _import_pde()
    grid = pde.CartesianGrid([[0.0, length], [0.0, length]], [nx, ny], periodic=True)
    field = pde.FieldCollection([pde.ScalarField(grid, 0.0), pde.ScalarField(grid, 1.0)])
    solver = pde.EulerSolver(_parametric_pde_class()(), backend=backend)
    return field, solver.make_stepper(field, dt=inner_dt)


class CahnHilliardSolver(SolverBase):
    """py-pde Cahn–Hilliard on a periodic square, one ``dt`` per ``step``.

    Args:
        resolution: ``(nx, ny)`` cells; py-pde's grid axis 0 is ``x``, the
            uniform state stores ``(y, x)``.
        length: side of the periodic square (length units; the interface width
            is ``sqrt(gamma)`` in the same units).
        dt: duration of one ``step`` (time units).
        max_interface_width: largest ``gamma`` the inner time step is stable
            for; larger parameters raise ``ValueError``.
        mean_composition: mean of ``c`` in :meth:`initial_state` (0 gives
            bicontinuous patterns, ±0.4 droplets).
        noise_amplitude: standard deviation of the initial white noise.
        backend: py-pde backend, ``"numba"`` (compiled, fast steps; ~10–20 s
            to compile once per grid) or ``"numpy"`` (no compilation).
    """

    name = "pypde-cahn-hilliard"
    param_names = ("interface_width",)

    def __init__(
        self,
        *,
        resolution: tuple[int, int] = (32, 32),
        length: float = 32.0,
        dt: float = 1.0,
        max_interface_width: float = 2.0,
        mean_composition: float = 0.0,
        noise_amplitude: float = 0.1,
        backend: str = "numba",
    ) -> None:
        nx, ny = (int(r) for r in resolution)
        if nx != ny or nx < 4:
            raise ValueError(
                f"resolution must be square with at least 4 cells, got {tuple(resolution)}; "
                "the domain is a square of side `length`"
            )
        for label, value in (
            ("length", length),
            ("dt", dt),
            ("max_interface_width", max_interface_width),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be a positive number, got {value!r}")
        if backend not in ("numba", "numpy"):
            raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
        self.nx, self.ny, self.length, self.dt = nx, ny, float(length), float(dt)
        self.max_interface_width = float(max_interface_width)
        self.mean_composition, self.noise_amplitude = (
            float(mean_composition),
            float(noise_amplitude),
        )
        self.backend = backend
        # Explicit Euler is stable for dt * rate < 2, with the largest rate of the
        # linearised operator lam * (f''(c) + gamma * lam), lam = 8 / dx^2 the largest
        # eigenvalue of the 5-point Laplacian and f''(c) = 3c^2 - 1 <= 2 for |c| <= 1.
        lam = 8.0 / (self.length / nx) ** 2
        rate = lam * (2.0 + self.max_interface_width * lam)
        self.n_inner = max(1, math.ceil(self.dt / (_SAFETY * 2.0 / rate)))
        self.inner_dt = self.dt / self.n_inner
        self._state_shape = (1, ny, nx)
        self.capabilities = Capabilities(differentiable=False, batched=False)

    # ------------------------------------------------------------------ protocol
    def _check_params(self, params: Tensor, batch: int) -> np.ndarray:
        if params.ndim != 2 or params.shape != (batch, 1):
            raise ValueError(
                f"params must have shape ({batch}, 1) (interface_width per sample), got {tuple(params.shape)}"
            )
        gamma = params[:, 0].detach().double().cpu().numpy()
        bad = ~np.isfinite(gamma) | (gamma <= 0) | (gamma > self.max_interface_width)
        if bad.any():
            raise ValueError(
                f"interface_width {gamma[bad].tolist()} outside (0, {self.max_interface_width}]; "
                "build the solver with a larger max_interface_width (smaller inner time step)"
            )
        return gamma

    def to_native(self, state: Tensor, params: Tensor) -> list[Any]:
        """One py-pde ``FieldCollection([c, gamma])`` per batch member (float64)."""
        pde = _import_pde()
        gamma = self._check_params(params, len(state))
        grid = pde.CartesianGrid([[0.0, self.length]] * 2, [self.nx, self.ny], periodic=True)
        out = []
        for c, g in zip(state.detach().double().cpu().numpy(), gamma, strict=True):
            # uniform layout (y, x) -> py-pde layout (x, y)
            out.append(pde.FieldCollection([pde.ScalarField(grid, c[0].T.copy()), pde.ScalarField(grid, float(g))]))
        return out

    def from_native(self, native: list[Any]) -> Tensor:
        """Stack the ``c`` fields of py-pde collections into ``(B, 1, ny, nx)`` float32."""
        data = np.stack([np.asarray(f[0].data).T for f in native])[:, None]
        return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        """Advance each sample by ``dt`` with py-pde's compiled Euler stepper."""
        if state.ndim != 4 or tuple(state.shape[1:]) != self._state_shape:
            raise ValueError(
                f"state must have shape (B, {', '.join(map(str, self._state_shape))}), got {tuple(state.shape)}"
            )
        gamma = self._check_params(params, len(state))
        field, stepper = _compiled_stepper(self.nx, self.ny, self.length, self.inner_dt, self.backend)
        data = state.detach().double().cpu().numpy()
        out = np.empty(data.shape, dtype=np.float32)
        for b in range(len(data)):
            field.data[0] = data[b, 0].T
            field.data[1] = gamma[b]
            stepper(field, 0.0, self.n_inner * self.inner_dt)
            out[b, 0] = field.data[0].T
        return torch.from_numpy(out).to(state.device)

    # ------------------------------------------------------------- data generation
    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Mean composition plus zero-mean white noise, ``(B, 1, ny, nx)`` float32.

        Reproducible from ``seed``; batch member ``b`` gets the ``b``-th draw of
        one generator, so the same seed and batch size give the same states.
        """
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((len(params), 1, self.ny, self.nx))
        noise -= noise.mean(axis=(2, 3), keepdims=True)
        c = self.mean_composition + self.noise_amplitude * noise
        return torch.from_numpy(c.astype(np.float32))

    def describe(self) -> dict[str, Any]:
        pde = _import_pde()
        return {
            "name": self.name,
            "resolution": [self.nx, self.ny],
            "length": self.length,
            "dt": self.dt,
            "inner_dt": self.inner_dt,
            "n_inner": self.n_inner,
            "scheme": "py-pde EulerSolver (explicit), 5-point Laplacian, periodic",
            "max_interface_width": self.max_interface_width,
            "mean_composition": self.mean_composition,
            "noise_amplitude": self.noise_amplitude,
            "backend": self.backend,
            "py-pde": pde.__version__,
        }


def make_cahn_hilliard_solver(*, resolution: tuple[int, int] = (32, 32), **options: Any) -> CahnHilliardSolver:
    """Registry factory for :class:`CahnHilliardSolver`.

    Suggested pair: reference ``resolution=(64, 64)``, source ``(32, 32)`` with
    the default ``length=32`` and ``dt=1`` (coarse ``dx = 1`` vs interface
    width ``sqrt(gamma)`` in ``[0.7, 1.4]`` for ``gamma`` in ``[0.5, 2]``).
    """
    return CahnHilliardSolver(resolution=resolution, **options)
