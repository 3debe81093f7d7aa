"""The solver adapter protocol.

An adapter wraps one simulator behind ``step(state, params) -> state`` on a
*batched uniform state*: a float tensor of shape ``(B, C, *spatial)`` (batch
first, channels, then 1, 2 or 3 grid axes ordered ``x`` / ``y, x`` /
``z, y, x``, so ``x`` is always last), plus a ``(B, P)`` tensor of physical
parameters (for example the Reynolds number) so that one call can advance
samples with different parameters.

Adapters declare :class:`Capabilities`. A differentiable adapter lets autograd
flow through ``step`` (first-order SOL); every adapter can be used in
*black-box* mode via :func:`black_box`, which guarantees that no autograd graph
passes through the solver. The design follows jax-cfd's ``step_fn: State ->
State``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from sciml_zoo.errors import ConfigError, SolverError

__all__ = [
    "MAX_SPATIAL_DIMS",
    "Capabilities",
    "Solver",
    "SolverBase",
    "StepCounter",
    "StepFn",
    "black_box",
    "block_average",
    "check_state",
    "counting",
    "differentiable",
    "spatial_dims",
]

StepFn = Callable[[Tensor, Tensor], Tensor]
"""A step function ``(state (B,C,*spatial), params (B,P)) -> state (B,C,*spatial)``."""

MAX_SPATIAL_DIMS = 3


def spatial_dims(state_or_mask: Tensor) -> int:
    """Number of spatial axes (1, 2 or 3) of a batched state ``(B, C, *spatial)``
    or a per-sample mask ``(C, *spatial)``.

    A boolean tensor is read as a mask, anything else as a batched state.

    Raises:
        ValueError: the tensor has no spatial axis or more than three.
    """
    lead = 1 if state_or_mask.dtype == torch.bool else 2
    n = state_or_mask.dim() - lead
    if not 1 <= n <= MAX_SPATIAL_DIMS:
        what = "mask (C, *spatial)" if lead == 1 else "state (B, C, *spatial)"
        raise ValueError(f"a {what} needs 1 to {MAX_SPATIAL_DIMS} spatial axes, got shape {tuple(state_or_mask.shape)}")
    return n


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do.

    Attributes:
        differentiable: gradients flow through ``step`` via autograd.
        batched: one ``step`` call advances a whole batch at roughly the cost of
            fewer unbatched calls (so ZO queries should be sent as one batch).
    """

    differentiable: bool = False
    batched: bool = False


@runtime_checkable
class Solver(Protocol):
    """What the library needs from a simulator adapter."""

    name: str
    capabilities: Capabilities
    param_names: tuple[str, ...]

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Per-sample uniform state shape ``(C, *spatial)``, 1 to 3 spatial axes."""
        ...

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        """Advance ``state`` (B,C,*spatial) by one time step with ``params`` (B,P)."""
        ...


class SolverBase:
    """Convenience base class with the optional parts of the protocol.

    Subclasses set ``name``, ``capabilities``, ``param_names``, ``state_shape``
    and implement :meth:`step`; data generation additionally uses
    :meth:`initial_state` and :meth:`restrict`.
    """

    name: str = "solver"
    capabilities: Capabilities = Capabilities()
    param_names: tuple[str, ...] = ()
    _state_shape: tuple[int, ...] = (1, 1, 1)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return self._state_shape

    def step(self, state: Tensor, params: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def valid_mask(self) -> Tensor:
        """Boolean ``(C, *spatial)`` mask of entries that carry physical values.

        Padded layouts (e.g. a staggered grid stored as one padded tensor) mark
        their padding ``False``; corrections are zeroed there and metrics ignore
        it. The default marks everything valid.
        """
        return torch.ones(self.state_shape, dtype=torch.bool)

    def to_native(self, state: Tensor, params: Tensor) -> Any:
        """Convert a uniform state to the simulator's own representation."""
        return state

    def from_native(self, native: Any) -> Tensor:
        """Convert the simulator's representation back to a uniform state."""
        return native

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Initial condition ``(B, C, *spatial)`` for parameters ``params`` (B,P)."""
        raise NotImplementedError(f"{type(self).__name__} does not define initial_state()")

    def restrict(self, state: Tensor, resolution: tuple[int, ...]) -> Tensor:
        """Restrict a state of this solver onto the grid of the same solver at ``resolution``.

        ``resolution`` is written as in the factory, ``(nx,)``, ``(nx, ny)`` or
        ``(nx, ny, nz)``; the state's spatial axes are the reverse order. The
        default suits cell-centred layouts: :func:`block_average` when each
        fine size is an integer multiple of the coarse one. Staggered layouts
        or spectral solvers override it (a spectral solver truncates modes, so
        its ratio need not be an integer).

        Raises:
            ConfigError: (a ``ValueError``) the ratio is not an integer in every axis.
        """
        fine = tuple(state.shape[2:])
        coarse = tuple(int(n) for n in reversed(tuple(resolution)))
        if len(coarse) != len(fine) or any(c < 1 or f % c for f, c in zip(fine, coarse, strict=True)):
            raise ConfigError(  # a ValueError too: a recipe whose resolutions do not divide
                f"cannot restrict a grid of {tuple(reversed(fine))} cells onto resolution {tuple(resolution)}: "
                f"{type(self).__name__} block-averages, so each coarse size must divide the fine one; choose a "
                "reference_resolution that is a multiple of source_resolution in every axis, or override restrict()"
            )
        return block_average(state, tuple(f // c for f, c in zip(fine, coarse, strict=True)))

    def describe(self) -> dict[str, Any]:
        """JSON-able description recorded with every dataset and result."""
        return {"name": self.name, "state_shape": list(self.state_shape)}


def check_state(
    state: Any, expected_shape: tuple[int, ...], *, who: str, batch: int | None = None, dtype: Any = None
) -> Tensor:
    """Validate a state returned by an adapter; raise :class:`SolverError` if bad.

    Args:
        state, expected_shape: what the adapter returned; its per-sample shape ``(C, *spatial)``.
        who: name of the adapter and call, used in the message.
        batch, dtype: expected batch size and dtype (the input's: kept by a step), if known.
    """
    if not isinstance(state, Tensor):
        raise SolverError(
            f"{who} returned {type(state).__name__}, expected a torch.Tensor of shape "
            f"(B, {', '.join(map(str, expected_shape))}); convert with torch.as_tensor()"
        )
    if tuple(state.shape[1:]) != tuple(expected_shape) or (batch is not None and state.shape[0] != batch):
        want = f"({batch if batch is not None else 'B'}, {', '.join(map(str, expected_shape))})"
        raise SolverError(
            f"{who} returned a state of shape {tuple(state.shape)}, expected {want}; "
            "check the adapter's from_native() layout (batch, channel, [z, [y,]] x)"
        )
    if not torch.is_floating_point(state) or dtype not in (None, state.dtype):
        fix = "states must be floating point" if dtype is None else f"for a {dtype} state; return the input's dtype"
        raise SolverError(f"{who} returned dtype {state.dtype}{';' if dtype is None else ''} {fix}")
    if not bool(torch.isfinite(state).all()):
        bad = (~torch.isfinite(state)).flatten(1).any(1).nonzero().flatten().tolist()
        raise SolverError(
            f"{who} produced NaN/Inf in batch member(s) {bad}; the simulation diverged "
            "(reduce the time step, check the parameters, or the correction's scale)"
        )
    return state


class _BlackBoxStep:
    """Callable that runs a solver with no autograd graph through it."""

    def __init__(self, solver: Solver, *, validate: bool = True) -> None:
        self.solver = solver
        self.validate = validate
        self.__name__ = f"black_box({solver.name})"

    def __call__(self, state: Tensor, params: Tensor) -> Tensor:
        with torch.no_grad():
            out = self.solver.step(state.detach(), params.detach())
        if self.validate:
            name = self.solver.name
            check_state(out, self.solver.state_shape, who=f"{name}.step", batch=len(state), dtype=state.dtype)
        # a fresh leaf: nothing upstream can receive a gradient through it
        return out.detach()


def black_box(solver: Solver, *, validate: bool = True) -> StepFn:
    """Return the solver's step in black-box mode.

    The returned function detaches its inputs and runs under ``torch.no_grad``,
    so no autograd graph ever passes through the simulator — exactly the
    situation of a Fortran code or closed binary. Outputs are checked for
    shape and NaN (:class:`SolverError`) unless ``validate=False``.
    """
    return _BlackBoxStep(solver, validate=validate)


def differentiable(solver: Solver, *, validate: bool = True) -> StepFn:
    """Return the solver's step with autograd flowing through it.

    Raises:
        SolverError: the adapter does not declare ``differentiable=True``.
    """
    if not solver.capabilities.differentiable:
        raise SolverError(
            f"solver {solver.name!r} is not differentiable; use a zeroth-order method "
            "(--method zo-sol) or NON instead of fo-sol"
        )

    def step(state: Tensor, params: Tensor) -> Tensor:
        out = solver.step(state, params)
        if validate:
            check_state(out, solver.state_shape, who=f"{solver.name}.step", batch=len(state), dtype=state.dtype)
        return out

    step.__name__ = f"differentiable({solver.name})"
    return step


class StepCounter:
    """Counts solver *sample-steps*: one step of one batch member counts 1.

    This is the cost unit of every table in the project: a training iteration
    that rolls out ``n`` steps for a batch of ``B`` costs ``n * B``.
    """

    def __init__(self) -> None:
        self.sample_steps = 0
        self.calls = 0  # step calls; tests read it to check that queries go out as one batch

    def __repr__(self) -> str:
        return f"StepCounter(sample_steps={self.sample_steps}, calls={self.calls})"


def counting(step: StepFn, counter: StepCounter) -> StepFn:
    """Wrap ``step`` so each call adds its batch size to ``counter``."""

    def counted(state: Tensor, params: Tensor) -> Tensor:
        counter.sample_steps += int(state.shape[0])
        counter.calls += 1
        return step(state, params)

    counted.__name__ = f"counting({getattr(step, '__name__', 'step')})"
    return counted


def block_average(state: Tensor, factor: int | tuple[int, ...]) -> Tensor:
    """Restrict a cell-centred ``(B, C, *spatial)`` state by averaging blocks of cells.

    The default restriction of cell-centred adapters: it conserves the mean
    of every block (mass, momentum). Staggered layouts need their own.

    Args:
        state: ``(B, C, *spatial)`` with 1 to 3 spatial axes.
        factor: block size, one int for every axis or one per spatial axis
            (in the state's axis order).

    Raises:
        ValueError: a factor does not divide its grid size.
    """
    n = spatial_dims(state)
    sizes = tuple(state.shape[2:])
    factors = (factor,) * n if isinstance(factor, int) else tuple(int(f) for f in factor)
    if len(factors) != n or any(f < 1 or s % f for s, f in zip(sizes, factors, strict=True)):
        raise ValueError(f"cannot downsample a {sizes} grid by {factor}; the factor must divide every grid size")
    pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
    return pool(state, factors)  # type: ignore[operator]
