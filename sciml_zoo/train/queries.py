"""How the loop reaches the solver: query step, fault counts, gradient source, device.

The loop builds the black-box step once (executor + fault policy) and hands it
to :func:`~sciml_zoo.train.gradients.make_gradient`; every failure, retry,
timeout, restart, dropped member, skipped iteration and estimator fallback is
counted in one :class:`FaultCounts`, which goes to ``log.csv``,
``summary.json`` and the comparison table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from sciml_zoo import faults
from sciml_zoo.config import TrainConfig
from sciml_zoo.estimators.base import merge_stats
from sciml_zoo.nn import CorrectionNet
from sciml_zoo.registry import resolve_file_solver
from sciml_zoo.solver import Solver, StepCounter
from sciml_zoo.train.gradients import make_gradient

__all__ = ["FaultCounts", "make_query_step", "make_gradient_source", "on_device"]


class FaultCounts:
    """The run's fault counters: the fault policy's ``FaultCounts`` plus the loop's own.

    ``inner`` is the :class:`sciml_zoo.faults.FaultCounts` that the guarded
    query step increments; the loop adds dropped members and skipped iterations.
    """

    def __init__(self) -> None:
        self.inner = faults.FaultCounts()

    def add(self, key: str, n: int) -> None:
        setattr(self.inner, key, int(getattr(self.inner, key)) + n)

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.inner.as_dict().items()}

    def load(self, counts: dict[str, Any]) -> None:
        for key, value in counts.items():
            setattr(self.inner, key, int(value))

    def row(self, sources: Iterable[Any]) -> dict[str, int | float]:
        """The counts plus every gradient source's numeric ``stats()`` (estimator fallbacks, ...).

        With a curriculum there is one source per unroll length: counts add up
        over them, gauges (e.g. the band radius) take the largest (:func:`merge_stats`).
        """
        out: dict[str, int | float] = dict(self.as_dict())
        for source in sources:
            merge_stats(out, source.stats())
        return out


def make_query_step(
    cfg: TrainConfig, solver: Solver, spec: tuple[str, dict[str, Any]], counts: FaultCounts
) -> faults.GuardedStep:
    """The black-box step of ``cfg.executor`` under the fault policy of ``cfg``.

    ``workers > 0`` with the default local executor fans an unbatched adapter
    out to a process pool (a batched one already answers a batch in one call).
    """
    kind = cfg.executor
    if kind == "local" and cfg.workers > 0 and not solver.capabilities.batched:
        kind = "process"
    # workers build the solver from this spec: the same name and options as the parent's, after the
    # user's --solver/--solver-option and the refusal of program-running options named by the dataset
    spec = resolve_file_solver(spec[0], spec[1], origin=f"dataset (solver {spec[0]!r})")
    policy = faults.FaultPolicy(
        timeout_s=cfg.timeout_s, retries=cfg.retries, max_consecutive_failures=cfg.max_consecutive_failures
    )
    return faults.make_query_step(
        solver,
        executor=kind,
        workers=cfg.workers,
        scheduler=cfg.scheduler_address,
        solver_spec=spec,
        policy=policy,
        counts=counts.inner,
    )


def make_gradient_source(
    cfg: TrainConfig,
    model: CorrectionNet,
    solver: Solver,
    counter: StepCounter,
    step: faults.GuardedStep | None,
) -> Any:
    """``make_gradient`` with the loop's guarded query step (FO-SOL differentiates the solver itself)."""
    return make_gradient(cfg, model, solver, counter, step_fn=None if cfg.method == "fo-sol" else step)


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
