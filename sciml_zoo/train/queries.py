"""How the loop reaches the solver: query step, fault counts, gradient source, device.

The loop builds the black-box step once (executor + fault policy) and hands it
to :func:`~sciml_zoo.train.gradients.make_gradient`; every failure, retry,
timeout, restart, dropped member, skipped iteration and estimator fallback is
counted in one :class:`FaultCounts`, which goes to ``log.csv``,
``summary.json`` and the comparison table.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from sciml_zoo import executors
from sciml_zoo.errors import ConfigError
from sciml_zoo.nn import CorrectionNet
from sciml_zoo.solver import Solver, StepCounter, StepFn, black_box
from sciml_zoo.train.config import TrainConfig
from sciml_zoo.train.gradients import make_gradient

try:  # the fault policy (sciml_zoo.faults) lands with the executors branch
    from sciml_zoo import faults as _faults  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - until merged
    _faults = None  # type: ignore[assignment]

__all__ = ["FaultCounts", "COUNT_KEYS", "make_query_step", "make_gradient_source", "on_device"]

COUNT_KEYS = ("failures", "retries", "timeouts", "restarts", "dropped_members", "skipped_iterations")


class _Counts:
    """Stand-in for ``sciml_zoo.faults.FaultCounts`` (same fields)."""

    def __init__(self) -> None:
        for key in COUNT_KEYS:
            setattr(self, key, 0)

    def as_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in COUNT_KEYS}


class FaultCounts:
    """The run's fault counters: the fault policy's ``FaultCounts`` plus the loop's own.

    ``inner`` is the object the fault policy (``guarded``) increments.
    """

    def __init__(self) -> None:
        self.inner: Any = _faults.FaultCounts() if _faults is not None else _Counts()

    def add(self, key: str, n: int) -> None:
        setattr(self.inner, key, int(getattr(self.inner, key, 0)) + n)

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.inner.as_dict().items()}

    def load(self, counts: dict[str, Any]) -> None:
        for key, value in counts.items():
            setattr(self.inner, key, int(value))

    def row(self, sources: Iterable[Any]) -> dict[str, int | float]:
        """The counts plus every gradient source's numeric ``stats()`` (estimator fallbacks, ...)."""
        out: dict[str, int | float] = dict(self.as_dict())
        for source in sources:
            stats = source.stats() if callable(getattr(source, "stats", None)) else {}
            for key, value in stats.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[key] = out.get(key, 0) + value
        return out


def make_query_step(cfg: TrainConfig, solver: Solver, spec: tuple[str, dict[str, Any]], counts: FaultCounts) -> StepFn:
    """The black-box step of ``cfg.executor`` under the fault policy of ``cfg``."""
    kind = "process" if cfg.executor == "local" and cfg.workers > 0 else cfg.executor
    if kind == "local" or solver.capabilities.batched:
        step = black_box(solver)
    elif kind == "process":
        pool = executors.ProcessPoolSolverExecutor(spec[0], spec[1], max_workers=cfg.workers)
        step = executors.make_parallel_step(solver, pool)
    else:
        dask = getattr(executors, "DaskSolverExecutor", None)
        if dask is None:
            raise ConfigError("train.executor = 'dask' is not available here; install sciml-zoo[dask]")
        pool = dask(spec[0], spec[1], n_workers=cfg.workers or None, address=cfg.scheduler_address)
        step = executors.make_parallel_step(solver, pool)
    if _faults is not None:
        policy = _faults.FaultPolicy(
            timeout_s=cfg.timeout_s, retries=cfg.retries, max_consecutive_failures=cfg.max_consecutive_failures
        )
        step = _faults.guarded(step, policy, counts.inner)
    return step


def make_gradient_source(
    cfg: TrainConfig,
    model: CorrectionNet,
    solver: Solver,
    counter: StepCounter,
    counts: FaultCounts,
    spec: tuple[str, dict[str, Any]],
) -> Any:
    """``make_gradient`` with the loop's query step where its signature takes one."""
    accepted = inspect.signature(make_gradient).parameters
    kwargs: dict[str, Any] = {}
    if "step_fn" in accepted and cfg.method != "fo-sol":
        kwargs["step_fn"] = make_query_step(cfg, solver, spec, counts)
    if "solver_spec" in accepted:
        kwargs["solver_spec"] = spec
    return make_gradient(cfg, model, solver, counter, **kwargs)


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
