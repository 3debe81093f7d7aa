"""How the loop reaches the solver: query step, fault counts, dropped members, gradient source, device.

The loop builds the guarded solver step once (executor + fault policy of
:mod:`sciml_zoo.faults`, for every method: FO-SOL's differentiable step too)
and hands it to :func:`~sciml_zoo.train.gradients.make_gradient`; every
failure, retry, timeout, restart, dropped member, skipped iteration and
estimator fallback is counted in one :class:`~sciml_zoo.faults.FaultCounts`,
which goes to ``log.csv``, ``summary.json`` and the comparison table.
:class:`MemberDrops` stops a run in which one training simulation is dropped
too often (its queries keep failing), naming it and its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sciml_zoo import faults
from sciml_zoo.config import TrainConfig
from sciml_zoo.errors import SolverError
from sciml_zoo.faults import FaultCounts
from sciml_zoo.nn import CorrectionNet
from sciml_zoo.registry import resolve_file_solver
from sciml_zoo.solver import Solver, StepCounter
from sciml_zoo.train.gradients import make_gradient

__all__ = ["FaultCounts", "MemberDrops", "make_query_step", "make_gradient_source", "on_device"]


def make_query_step(
    cfg: TrainConfig, solver: Solver, spec: tuple[str, dict[str, Any]], counts: FaultCounts
) -> faults.GuardedStep:
    """The solver step of ``cfg.executor`` under the fault policy of ``cfg``, for every method.

    FO-SOL gets the differentiable step in this process (autograd through the
    solver; ``executor`` and ``workers`` do not apply). ``workers > 0`` with
    the default local executor fans an unbatched adapter out to a process
    pool (a batched one already answers a batch in one call).
    """
    policy = faults.FaultPolicy(
        timeout_s=cfg.timeout_s, retries=cfg.retries, max_consecutive_failures=cfg.max_consecutive_failures
    )
    if cfg.method_spec.differentiable:
        return faults.make_query_step(solver, policy=policy, counts=counts, differentiable=True)
    kind = cfg.executor
    if kind == "local" and cfg.workers > 0 and not solver.capabilities.batched:
        kind = "process"
    # workers build the solver from this spec: the same name and options as the parent's, after the
    # user's --solver/--solver-option and the refusal of program-running options named by the dataset
    spec = resolve_file_solver(spec[0], spec[1], origin=f"dataset (solver {spec[0]!r})")
    return faults.make_query_step(
        solver,
        executor=kind,
        workers=cfg.workers,
        scheduler=cfg.scheduler_address,
        solver_spec=spec,
        policy=policy,
        counts=counts,
    )


MIN_DRAWS = 10
"""Draws of a training simulation before its dropped share is judged (one unlucky drop is no pattern)."""


class MemberDrops:
    """How often each training simulation was drawn and dropped; stops a run that keeps losing one.

    A batch member whose queries still fail after the retries is dropped from
    its iteration. A simulation whose parameters make the solver fail every
    time would so never be trained on, without a word (the second audit: one
    of three simulations, 103 of 300 members dropped, the corrected model
    worse than none). Once a simulation has been drawn :data:`MIN_DRAWS`
    times, a dropped share above ``max_share`` raises one
    :class:`~sciml_zoo.errors.SolverError` line naming it and its parameters.

    Simulations are told apart by their parameter rows (a window's ``params``
    is its simulation's row of the training split; simulations with equal
    parameters share one tally).

    Args:
        params: ``(S, P)`` physical parameters of the training simulations.
        param_names: their names (``P``), for the message.
        max_share: largest tolerated dropped share, in ``[0, 1]``.
    """

    def __init__(self, params: Tensor, param_names: Sequence[str], max_share: float) -> None:
        self.params = params.detach().cpu()
        self.names = list(param_names) or [f"p{i}" for i in range(self.params.shape[1])]
        self.max_share = float(max_share)
        self.drawn = [0] * len(self.params)
        self.dropped = [0] * len(self.params)

    def _sims(self, params: Tensor) -> list[int]:
        """The first training simulation with each row's parameters (-1: none)."""
        same = (params.detach().cpu()[:, None, :] == self.params[None]).all(-1)  # (B, S)
        return [int(row.nonzero()[0]) if bool(row.any()) else -1 for row in same]

    def record(self, params: Tensor, kept: Sequence[int], last_error: str = "") -> None:
        """Tally one iteration's batch (``params`` (B, P)) of which rows ``kept`` stayed; check the shares."""
        keep = set(kept)
        for row, sim in enumerate(self._sims(params)):
            if sim >= 0:
                self.drawn[sim] += 1
                self.dropped[sim] += row not in keep
        self.check(last_error)

    def check(self, last_error: str = "") -> None:
        """Raise if a simulation drawn at least :data:`MIN_DRAWS` times was dropped more than ``max_share``."""
        for sim, (drawn, dropped) in enumerate(zip(self.drawn, self.dropped, strict=True)):
            if drawn >= MIN_DRAWS and dropped > self.max_share * drawn:
                values = ", ".join(f"{n}={float(v):g}" for n, v in zip(self.names, self.params[sim], strict=True))
                why = f" (last error: {last_error})" if last_error else ""
                raise SolverError(
                    f"training simulation {sim} ({values}) was dropped in {dropped} of {drawn} draws "
                    f"({dropped / drawn:.0%} > train.max_dropped_share={self.max_share:g}): the solver keeps failing "
                    f"for its parameters{why}; fix the solver there, remove the simulation from the recipe, "
                    "or raise train.max_dropped_share"
                )

    def state_dict(self) -> dict[str, list[int]]:
        """JSON-able checkpoint state (the tallies)."""
        return {"drawn": list(self.drawn), "dropped": list(self.dropped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.drawn = [int(v) for v in state["drawn"]]
        self.dropped = [int(v) for v in state["dropped"]]


def make_gradient_source(
    cfg: TrainConfig,
    model: CorrectionNet,
    solver: Solver,
    counter: StepCounter,
    step: faults.GuardedStep | None,
) -> Any:
    """``make_gradient`` with the loop's guarded solver step (differentiable for FO-SOL)."""
    return make_gradient(cfg, model, solver, counter, step_fn=step)


class _OnDevice:
    """A solver proxy that runs on the CPU and moves states from and to ``device``."""

    def __init__(self, solver: Solver, device: torch.device) -> None:
        self._solver, self._device = solver, device

    def __getattr__(self, name: str) -> Any:
        return getattr(self._solver, name)

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        return self._solver.step(state.cpu(), params.cpu()).to(self._device)

    @property
    def valid_mask(self) -> Tensor:
        return self._solver.valid_mask.to(self._device)  # type: ignore[attr-defined]


def on_device(solver: Solver, device: torch.device) -> Solver:
    """``solver`` itself on the CPU or if it declares ``supports_device``; else a moving proxy.

    The proxy's transfers are differentiable, so FO-SOL still backpropagates.
    """
    if device.type == "cpu" or getattr(solver, "supports_device", False):
        return solver
    return _OnDevice(solver, device)  # type: ignore[return-value]
