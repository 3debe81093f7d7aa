"""PhiFlow adapter for the Solver-in-the-Loop unsteady wake flow.

Scene (Um et al. 2020, arXiv 2007.00016, Sec. 5.2): a 100 x 200 box, flow along +y
entering at ``y = 0`` with speed 1 and leaving through an open (zero-gradient)
outflow at ``y = 200``, zero-gradient side walls, a cylinder of radius 10 at
(50, 50). One step is semi-Lagrangian advection, explicit diffusion with
viscosity ``nu = U * D / Re`` (U = 1, D = 20) and a CG pressure projection with
the obstacle, jit-compiled by PhiFlow and batched over a ``b`` dimension, so
one call advances samples with different Reynolds numbers.

Uniform state: the staggered velocity as one padded tensor ``(B, 2, ny+1,
nx+1)`` — channel 0 is ``u`` (x-faces), channel 1 is ``v`` (y-faces). The
padding row of ``u`` and padding column of ``v`` hold PhiFlow's boundary
extrapolation; :attr:`WakeFlow.valid_mask` marks them so corrections and
metrics ignore them. ``to_native``/``from_native`` round-trip exactly.

PhiFlow is imported lazily and only under ``with TORCH:`` so the library's
global backend is never changed. Traps handled here (PhiFlow 3.4): torch
tensors are wrapped with ``math.wrap`` (``math.tensor`` silently converts to
NumPy), spatial order ``x,y``, and fields are built from values rather than by
adding fields (which would add boundary conditions).
"""

from __future__ import annotations

import importlib.util
import math as pymath
import warnings
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.errors import SolverError
from sciml_zoo.solver import Capabilities, SolverBase


def _require_phiflow() -> None:
    """One line naming the extra, instead of ``ModuleNotFoundError: No module named 'phi'``."""
    if importlib.util.find_spec("phi") is None:
        raise SolverError("the phiflow-wake solver needs PhiFlow; install it with pip install 'sciml-zoo[phiflow]'")


__all__ = ["WakeFlow", "make_wake_solver", "DOMAIN", "CYLINDER"]

DOMAIN = (100.0, 200.0)
"""Physical size ``(x, y)`` of the box."""
CYLINDER = {"x": 50.0, "y": 50.0, "radius": 10.0}
INFLOW_SPEED = 1.0


class WakeFlow(SolverBase):
    """Batched, jit-compiled wake-flow step at one resolution.

    Args:
        resolution: ``(nx, ny)`` cells; the source grid is ``(32, 64)`` and the
            reference ``(128, 256)``.
        dt: time step in the scene's units (1 in the original).
        tolerance: relative and absolute CG tolerance of the pressure solve.
        max_iterations: CG iteration cap.
        jit: jit-compile the step (10x faster; the first call per batch size
            traces for ~1.5 s).
    """

    name = "phiflow-wake"
    param_names = ("re",)

    def __init__(
        self,
        *,
        resolution: tuple[int, int] = (32, 64),
        dt: float = 1.0,
        tolerance: float = 1e-3,
        max_iterations: int = 2000,
        jit: bool = True,
    ) -> None:
        _require_phiflow()  # fail when the solver is named, before any data is generated
        self.nx, self.ny = int(resolution[0]), int(resolution[1])
        if self.nx < 4 or self.ny < 4:
            raise ValueError(f"resolution {resolution} too small; use at least (4, 4)")
        self.dt = float(dt)
        self.tolerance = float(tolerance)
        self.max_iterations = int(max_iterations)
        self.jit = bool(jit)
        self._state_shape = (2, self.ny + 1, self.nx + 1)
        self.capabilities = Capabilities(differentiable=True, batched=True)
        self._native_step: Any = None

    # -- PhiFlow objects, built lazily -------------------------------------------------
    @cached_property
    def _phi(self) -> dict[str, Any]:
        _require_phiflow()
        import phi.torch  # noqa: F401  (registers the torch backend)
        from phi import geom
        from phi import math as pm
        from phi.math import extrapolation
        from phi.physics import fluid
        from phi.torch import TORCH

        with TORCH:
            boundary = {
                "x": extrapolation.ZERO_GRADIENT,
                "y-": pm.vec(x=0.0, y=INFLOW_SPEED),
                "y+": extrapolation.ZERO_GRADIENT,
            }
            bounds = geom.Box(x=DOMAIN[0], y=DOMAIN[1])
            obstacle = fluid.Obstacle(geom.Sphere(x=CYLINDER["x"], y=CYLINDER["y"], radius=CYLINDER["radius"]))
        return {"boundary": boundary, "bounds": bounds, "obstacle": obstacle, "TORCH": TORCH}

    def _wrap(self, state: Tensor) -> Any:
        from phi import math as pm
        from phi.math import batch, channel, spatial

        return pm.wrap(state.permute(0, 3, 2, 1), batch("b"), spatial("x,y"), channel(vector="x,y"))

    def _grid(self, values: Any) -> Any:
        from phi.field import StaggeredGrid

        phi = self._phi
        return StaggeredGrid(values, phi["boundary"], phi["bounds"], x=self.nx, y=self.ny)

    def _build_step(self) -> Any:
        from phi import math as pm
        from phi.math import Solve
        from phi.physics import advect, diffuse, fluid

        obstacle = self._phi["obstacle"]
        dt = self.dt
        adjoint = Solve("CG", self.tolerance, self.tolerance, max_iterations=self.max_iterations)
        solve = Solve(
            "CG",
            self.tolerance,
            self.tolerance,
            max_iterations=self.max_iterations,
            gradient_solve=adjoint,
        )

        def native_step(values: Any, viscosity: Any) -> Any:
            velocity = self._grid(values)
            velocity = advect.semi_lagrangian(velocity, velocity, dt=dt)
            velocity = diffuse.explicit(velocity, viscosity, dt=dt)
            velocity, _ = fluid.make_incompressible(velocity, obstacle, solve)
            return velocity.staggered_tensor()

        return pm.jit_compile(native_step) if self.jit else native_step

    # -- protocol ----------------------------------------------------------------------
    def viscosity(self, params: Tensor) -> Tensor:
        """Kinematic viscosity ``U * D / Re`` for ``params`` ``(B, 1)`` of Re."""
        return INFLOW_SPEED * 2 * CYLINDER["radius"] / params[:, 0]

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        """Advance ``state`` ``(B, 2, ny+1, nx+1)`` by ``dt`` at Reynolds ``params[:, 0]``.

        Differentiable: when autograd needs a gradient, the call goes through
        :class:`_TorchBackendStep` so that PhiFlow's backward pass also runs with
        the torch backend active.
        """
        if torch.is_grad_enabled() and state.requires_grad:
            return _TorchBackendStep.apply(state, params, self)
        return self._raw_step(state, params)

    def _raw_step(self, state: Tensor, params: Tensor) -> Tensor:
        from phi import math as pm
        from phi.math import batch

        if self._native_step is None:
            self._native_step = self._build_step()
        bits = 64 if state.dtype == torch.float64 else 32
        with self._phi["TORCH"], pm.precision(bits), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nu = pm.wrap(self.viscosity(params).to(state.dtype), batch("b"))
            out = self._native_step(self._wrap(state), nu)
            return out.native(["b", "vector", "y", "x"])

    @property
    def valid_mask(self) -> Tensor:
        mask = torch.ones(self.state_shape, dtype=torch.bool)
        mask[0, self.ny, :] = False  # u has ny rows of x-faces
        mask[1, :, self.nx] = False  # v has nx columns of y-faces
        return mask

    def to_native(self, state: Tensor, params: Tensor | None = None) -> Any:
        """The PhiFlow ``StaggeredGrid`` (batch dim ``b``) holding ``state``."""
        with self._phi["TORCH"]:
            return self._grid(self._wrap(state))

    def from_native(self, native: Any) -> Tensor:
        """Uniform padded tensor ``(B, 2, ny+1, nx+1)`` of a ``StaggeredGrid``."""
        with self._phi["TORCH"]:
            return native.staggered_tensor().native(["b", "vector", "y", "x"])

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Uniform inflow plus a small seeded asymmetric vortex behind the cylinder.

        The perturbation breaks the left/right symmetry so that shedding starts
        within a few hundred steps instead of waiting for round-off to grow.
        """
        gen = torch.Generator().manual_seed(seed)
        state = torch.zeros((len(params), *self.state_shape))
        state[:, 1] = INFLOW_SPEED
        dx, dy = DOMAIN[0] / self.nx, DOMAIN[1] / self.ny
        y = torch.arange(self.ny + 1).view(-1, 1) * dy
        x = torch.arange(self.nx + 1).view(1, -1) * dx
        for b in range(len(params)):
            amp = 0.3 * (1 + 0.2 * torch.rand((), generator=gen))
            cx = CYLINDER["x"] + 8 * (torch.rand((), generator=gen) - 0.5)
            bump = torch.exp(-((x - cx) ** 2 + (y - 80.0) ** 2) / (2 * 10.0**2))
            state[b, 0] = amp * bump
        state = state * self.valid_mask
        return self.from_native(self.to_native(state))

    def restrict(self, state: Tensor, resolution: tuple[int, ...]) -> Tensor:
        """Restrict onto the wake's grid at ``resolution`` = ``(nx, ny)``, a power of 2 coarser.

        Face-conserving 2x2 averaging, applied ``log2(factor)`` times (the
        paper's 4x restriction is two of these): a coarse x-face carries the
        mean of the two fine x-faces it covers, likewise for y-faces. Written in
        torch because PhiFlow's eager ``field.downsample2x`` costs ~1 s per call
        at 128 x 256; a test checks both agree exactly.
        """
        if len(resolution) != 2 or int(resolution[0]) < 1 or int(resolution[1]) < 1:
            raise ValueError(f"resolution must be (nx, ny), got {tuple(resolution)}")
        factor = self.nx // int(resolution[0])
        if factor * int(resolution[0]) != self.nx or factor * int(resolution[1]) != self.ny:
            raise ValueError(
                f"resolution {tuple(resolution)} is not ({self.nx}, {self.ny}) divided by one factor in x and y"
            )
        levels = int(round(pymath.log2(factor))) if factor >= 1 else -1
        if levels < 0 or 2**levels != factor:
            raise ValueError(f"downsample factor must be a power of 2, got {factor}")
        nx, ny = self.nx, self.ny
        for _ in range(levels):
            if nx % 2 or ny % 2:
                raise ValueError(f"grid ({nx}, {ny}) cannot be halved; use an even resolution")
            u = state[:, 0, :ny, ::2]  # (B, ny, nx+1) -> every other x-face
            u = 0.5 * (u[:, 0::2] + u[:, 1::2])  # (B, ny/2, nx/2+1)
            v = state[:, 1, ::2, :nx]  # (B, ny+1, nx) -> every other y-face
            v = 0.5 * (v[..., 0::2] + v[..., 1::2])  # (B, ny/2+1, nx/2)
            nx, ny = nx // 2, ny // 2
            coarse = state.new_empty((len(state), 2, ny + 1, nx + 1))
            coarse[:, 0, :ny] = u
            coarse[:, 0, ny] = u[:, -1]  # zero-gradient padding, as PhiFlow pads
            coarse[:, 1, :, :nx] = v
            coarse[:, 1, :, nx] = v[..., -1]
            state = coarse
        return state

    def downsample_phiflow(self, state: Tensor, factor: int) -> Tensor:
        """Reference implementation with PhiFlow's ``field.downsample2x`` (slow)."""
        from phi import field

        grid = self.to_native(state)
        with self._phi["TORCH"]:
            for _ in range(int(round(pymath.log2(factor)))):
                grid = field.downsample2x(grid)
            return grid.staggered_tensor().native(["b", "vector", "y", "x"])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resolution": [self.nx, self.ny],
            "dt": self.dt,
            "domain": list(DOMAIN),
            "cylinder": CYLINDER,
            "viscosity": "U*D/Re with U=1, D=20",
            "pressure_solve": {"method": "CG", "tolerance": self.tolerance},
            "jit": self.jit,
        }


class _TorchBackendStep(torch.autograd.Function):
    """Run PhiFlow's step with a graph, and its backward under the torch backend.

    PhiFlow's jit-compiled functions compute their adjoint (e.g. the pressure
    solve's transpose) lazily during backward; outside ``with TORCH:`` that
    falls back to NumPy and fails. This wrapper keeps the inner graph and
    replays ``torch.autograd.grad`` inside the backend context.
    """

    @staticmethod
    def forward(ctx: Any, state: Tensor, params: Tensor, solver: WakeFlow) -> Tensor:
        with torch.enable_grad():
            inner = state.detach().requires_grad_(True)
            out = solver._raw_step(inner, params.detach())
        ctx.inner, ctx.out, ctx.solver = inner, out, solver
        return out.detach()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:
        from phi import math as pm

        bits = 64 if grad_out.dtype == torch.float64 else 32
        with ctx.solver._phi["TORCH"], pm.precision(bits):
            (grad_in,) = torch.autograd.grad(ctx.out, ctx.inner, grad_out)
        del ctx.inner, ctx.out
        return grad_in, None, None


make_wake_solver = WakeFlow
"""Registry factory (the entry point ``phiflow-wake``): the class is its own factory."""
