"""One fault policy for solver queries, the same for every executor and adapter kind.

Expensive simulators are flaky: a solve diverges (PhiFlow raises ``Diverged``
in eager mode and returns NaN silently under jit), a node dies, an external
program hangs. Users of comparable tools ask that a failure "due to bad luck"
not end an overnight run (nevergrad#49, evotorch#50). The policy:

* every task (a row range of a batch, see
  :meth:`~sciml_zoo.executors.SolverExecutor.plan`) has a deadline of
  ``timeout_s`` per adapter call; in-process Python adapters are run in a
  thread and abandoned past the deadline (a Python thread cannot be killed),
  the process-pool and Dask executors time the call out inside the worker, an
  external program is killed by its adapter and restarted;
* a member whose query raised, timed out or returned NaN/Inf is retried up to
  ``retries`` times, alone (only failed members are resent), the error kept;
* then :class:`~sciml_zoo.errors.QueryFailure` names the failed members; the
  training loop drops them from this iteration (the rest reweighted), skips
  the iteration if none is left, and stops after ``max_consecutive_failures``
  failed iterations in a row;
* everything is counted in :class:`FaultCounts`.

Every solver call of the package goes through :class:`GuardedStep`: the
black-box queries of NON and ZO-SOL on any executor, FO-SOL's differentiable
steps (``differentiable=True``: in this process, autograd kept), evaluation
and diagnostics. A ``SystemExit`` or ``KeyboardInterrupt`` *raised by the
solver* is a fault like any other error (counted, retried, contained); a real
Ctrl-C or SIGTERM delivered to the process during a query still interrupts
(:class:`_SignalWatch` tells the two apart).

A wrong shape or dtype is an adapter bug, not bad luck: it is raised at once
as :class:`~sciml_zoo.errors.SolverError`, never retried.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError, QueryFailure, SolverError
from sciml_zoo.estimators.base import merge_stats
from sciml_zoo.executors import (
    DaskSolverExecutor,
    ProcessPoolSolverExecutor,
    QueryTimeout,
    SolverExecutor,
    VectorizedExecutor,
)
from sciml_zoo.executors.base import own_deadline
from sciml_zoo.solver import Capabilities, Solver, StepFn

__all__ = [
    "EXECUTORS",
    "FaultCounts",
    "FaultPolicy",
    "GuardedStep",
    "QueryFailure",
    "QueryTimeout",
    "guarded",
    "make_query_step",
]

EXECUTORS = ("local", "process", "dask")


@dataclass(frozen=True)
class FaultPolicy:
    """How solver queries are guarded.

    Attributes:
        timeout_s: seconds one adapter call may take (``None``: wait forever).
        retries: extra attempts of a failed member before it is given up.
        max_consecutive_failures: failed training iterations in a row after
            which the run stops (used by the training loop).
    """

    timeout_s: float | None = None
    retries: int = 2
    max_consecutive_failures: int = 3

    def __post_init__(self) -> None:
        t = self.timeout_s
        if t is not None:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise ConfigError(f"timeout_s must be a positive number of seconds or None, got {t!r}")
            object.__setattr__(self, "timeout_s", float(t))
        for key, low in (("retries", 0), ("max_consecutive_failures", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{key} must be an int >= {low}, got {value!r}")


@dataclass
class FaultCounts:
    """Running counts of faults (mutable; shared by the guarded step and the loop).

    Attributes:
        failures: member-queries that failed an attempt (raised, timed out or
            returned NaN/Inf); a task of ``k`` rows that raised counts ``k``.
        retries: member-queries sent again.
        timeouts: member-queries whose task timed out (also in ``failures``).
        restarts: solver workers or external programs restarted.
        dropped_members: batch members dropped from an iteration's loss (loop).
        skipped_iterations: iterations skipped because every member failed (loop).
    """

    failures: int = 0
    retries: int = 0
    timeouts: int = 0
    restarts: int = 0
    dropped_members: int = 0
    skipped_iterations: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name (for ``log.csv``, ``summary.json`` and tables)."""
        return {k: int(v) for k, v in asdict(self).items()}

    def state_dict(self) -> dict[str, int]:
        """JSON-able checkpoint state."""
        return self.as_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (tensors or ints)."""
        for f in fields(self):
            if f.name in state:
                setattr(self, f.name, int(state[f.name]))

    load = load_state_dict

    def add(self, key: str, n: int) -> None:
        """Add ``n`` to the count ``key`` (e.g. ``"dropped_members"``)."""
        setattr(self, key, int(getattr(self, key)) + int(n))

    def row(self, sources: Iterable[Any]) -> dict[str, int | float]:
        """The counts plus every gradient source's numeric ``stats()`` (a ``log.csv`` row's fault part).

        With a curriculum there is one source per unroll length, in the order
        they were used: counts add up over them, gauges (e.g. the band radius,
        the check's residual) are the last one's, the stage in use (:func:`merge_stats`).
        """
        out: dict[str, int | float] = dict(self.as_dict())
        for source in sources:
            merge_stats(out, source.stats(), latest=True)
        return out


class _SignalWatch:
    """Tells a real SIGINT/SIGTERM from a ``KeyboardInterrupt``/``SystemExit`` that a solver raised.

    While a query round runs (main thread only), the Python-level handlers of
    SIGINT and SIGTERM are wrapped so that a delivered signal is noted before
    the original handler runs (and raises, as Python's default Ctrl-C handler
    and the training loop's :mod:`~sciml_zoo.train.interrupts` do). An
    exception that is not an ``Exception`` is then a fault of the solver unless
    a signal was noted. Signals whose handler is the OS default (SIGTERM
    outside training) are not touched: they end the process as before.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signalled = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _SignalWatch:
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                handler = signal.getsignal(sig)
                if callable(handler):
                    self._saved[sig] = handler
                    signal.signal(sig, self._noting(handler))
        return self

    def _noting(self, handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        def noted(signum: int, frame: Any) -> Any:
            self.signalled = True
            return handler(signum, frame)

        return noted

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    def is_fault(self, exc: BaseException) -> bool:
        """Whether ``exc``, raised while collecting a query, is the solver's failure (not a real signal)."""
        return isinstance(exc, Exception) or not self.signalled


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, QueryFailure):  # an adapter's own failure report: keep its underlying error
        return exc.last_error.strip().splitlines()[0] if exc.last_error.strip() else type(exc).__name__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _rows(state: Tensor, params: Tensor, idx: list[int]) -> tuple[Tensor, Tensor]:
    """The rows ``idx`` of a batch: a view for a contiguous block, a gather otherwise."""
    if idx and idx[-1] - idx[0] + 1 == len(idx):
        return state[idx[0] : idx[-1] + 1], params[idx[0] : idx[-1] + 1]
    return state[idx], params[idx]


class GuardedStep:
    """A solver step whose queries run on ``executor`` under ``policy``.

    Calling it with ``state`` (B, C, *spatial) and ``params`` (B, P) returns
    the next states (B, C, *spatial), detached, on the input's device, in
    order, or raises :class:`~sciml_zoo.errors.QueryFailure` naming the members
    that still failed after ``policy.retries`` retries. With
    ``differentiable=True`` (FO-SOL; ``executor`` must run in this process
    with autograd on, :class:`~sciml_zoo.executors.VectorizedExecutor` with
    ``differentiable=True``) the inputs are not detached and the result
    carries the solver's autograd graph.
    """

    def __init__(
        self,
        executor: SolverExecutor,
        solver: Solver,
        policy: FaultPolicy,
        counts: FaultCounts,
        *,
        name: str | None = None,
        owns_executor: bool = False,
        differentiable: bool = False,
    ) -> None:
        self.executor, self.solver, self.policy, self.counts = executor, solver, policy, counts
        self.name = name or getattr(solver, "name", "solver")
        self.owns_executor = owns_executor
        self.differentiable = differentiable
        if differentiable and not getattr(executor, "differentiable", False):
            raise ConfigError(f"a differentiable guarded step needs an in-process executor, not {executor!r}")
        self.__name__ = f"guarded({self.name}, {type(executor).__name__})"

    def __call__(self, state: Tensor, params: Tensor) -> Tensor:
        with _SignalWatch() as watch:
            return self._call(state, params, watch)

    def _call(self, state: Tensor, params: Tensor, watch: _SignalWatch) -> Tensor:
        s, p = (state, params) if self.differentiable else (state.detach(), params.detach())
        n = len(s)
        out = torch.empty_like(s, requires_grad=False)
        groups = [list(r) for r in self.executor.plan(self.solver, n)]
        errors: dict[int, str] = {}
        attempt = 0
        while True:
            before = self.executor.restarts
            blocks = [_rows(s, p, idx) for idx in groups]
            futures = self.executor.submit_tasks(self.solver, blocks, timeout_s=self.policy.timeout_s)
            tasks = list(zip(groups, futures, strict=True))
            failed = self._collect(tasks, s, out, errors, watch)
            self.executor.recover()
            self.counts.restarts += self.executor.restarts - before
            if not failed:
                return out
            if attempt >= self.policy.retries:
                members = tuple(sorted(failed))
                last = errors[members[-1]]
                raise QueryFailure(
                    f"{self.name}: batch member(s) {list(members)} of {n} failed after {self.policy.retries} "
                    f"retries; last error: {last}",
                    members=members,
                    last_error=last,
                )
            attempt += 1
            self.counts.retries += len(failed)
            groups = [[i] for i in sorted(failed)]

    def _collect(
        self, tasks: list[tuple[list[int], Any]], s: Tensor, out: Tensor, errors: dict[int, str], watch: _SignalWatch
    ) -> list[int]:
        failed: list[int] = []
        for idx, future in tasks:
            try:
                res = future.result()
            except BaseException as exc:  # noqa: BLE001 - any adapter error, SystemExit included, is a failed query
                if not watch.is_fault(exc):
                    raise  # a real Ctrl-C or SIGTERM: stop waiting, let the caller save and stop
                failed += idx
                self.counts.failures += len(idx)
                if isinstance(exc, (QueryTimeout, TimeoutError)):
                    self.counts.timeouts += len(idx)
                for i in idx:
                    errors[i] = _one_line(exc)
                continue
            if not isinstance(res, Tensor) or tuple(res.shape) != (len(idx), *s.shape[1:]):
                got = tuple(res.shape) if isinstance(res, Tensor) else type(res).__name__
                raise SolverError(
                    f"{self.name}.step returned {got} for a batch of shape {(len(idx), *s.shape[1:])}; "
                    "an adapter must return one state of the input's shape per member"
                )
            if not torch.is_floating_point(res):
                raise SolverError(f"{self.name}.step returned dtype {res.dtype}; states must be floating point")
            if res.dtype != s.dtype:
                raise SolverError(
                    f"{self.name}.step returned dtype {res.dtype} for a {s.dtype} state; return the input's dtype, "
                    "e.g. torch.from_numpy(x).to(state.dtype)"
                )
            finite = torch.isfinite(res.reshape(len(idx), -1)).all(1)
            rows = torch.as_tensor(idx, device=out.device)
            out[rows[finite.to(out.device)]] = res[finite].to(out.device)
            for j in (~finite).nonzero().flatten().tolist():
                failed.append(idx[j])
                self.counts.failures += 1
                errors[idx[j]] = "returned NaN/Inf (the simulation diverged)"
        return failed

    def close(self) -> None:
        """Shut the executor down if this step created it."""
        if self.owns_executor:
            self.executor.shutdown()

    def __enter__(self) -> GuardedStep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _StepAsSolver:
    """Presents a plain step function to an executor as a solver."""

    def __init__(self, step: StepFn, *, name: str, batched: bool, restarts: Callable[[], int] | None) -> None:
        self._step, self.name = step, name
        self.capabilities = Capabilities(differentiable=False, batched=batched)
        self._restarts = restarts

    @property
    def restarts(self) -> int:
        return int(self._restarts()) if self._restarts is not None else 0

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        return self._step(state, params)


def guarded(
    step: StepFn,
    policy: FaultPolicy,
    counts: FaultCounts,
    *,
    name: str = "solver",
    batched: bool = True,
    restarts: Callable[[], int] | None = None,
) -> StepFn:
    """Guard a black-box step function run in this process.

    Args:
        step: ``(B, C, *spatial), (B, P) -> (B, C, *spatial)``.
        policy: timeout, retries (see :class:`FaultPolicy`).
        counts: updated in place.
        name: solver name used in messages.
        batched: the step answers a batch in one call; if ``False`` it is
            called one member at a time (``timeout_s`` is then per member).
        restarts: returns the adapter's restart count (e.g. an external
            program's), so restarts are counted.
    """
    solver = _StepAsSolver(step, name=name, batched=batched, restarts=restarts)
    return GuardedStep(VectorizedExecutor(), solver, policy, counts, name=name)  # type: ignore[arg-type]


def make_query_step(
    solver: Solver,
    *,
    executor: str | SolverExecutor = "local",
    workers: int = 0,
    scheduler: str | None = None,
    solver_spec: tuple[str | Callable[..., Solver], Mapping[str, Any]] | None = None,
    policy: FaultPolicy | None = None,
    counts: FaultCounts | None = None,
    threads_per_worker: int = 1,
    differentiable: bool = False,
) -> GuardedStep:
    """The guarded solver step: every solver call of training, evaluation and diagnostics.

    Args:
        solver: the driver's solver (called directly by ``"local"``; gives the
            name, capabilities and state shape otherwise).
        executor: ``"local"`` (this process, batched calls), ``"process"`` (a
            spawn process pool of ``workers`` processes), ``"dask"`` (a
            ``LocalCluster`` of ``workers`` processes, or the cluster at
            ``scheduler``), or a :class:`~sciml_zoo.executors.SolverExecutor`.
        workers: worker processes (0: one per core for ``process``, Dask's
            default for ``dask``).
        scheduler: Dask scheduler address ``tcp://host:port`` (``dask`` only).
        solver_spec: ``(registered name or module-level factory, options)``
            from which workers build their own solver (``process``/``dask``).
        policy: the fault policy (default :class:`FaultPolicy()`).
        counts: where faults are counted (default: a fresh :class:`FaultCounts`).
        threads_per_worker: threads per Dask worker / torch threads per process.
        differentiable: keep autograd through the solver (FO-SOL): queries run
            in this process (``executor="local"`` only) on a differentiable
            adapter; failures are retried and counted like black-box ones.

    Returns:
        A :class:`GuardedStep`; call ``close()`` when done to stop workers.
    """
    policy = policy if policy is not None else FaultPolicy()
    counts = counts if counts is not None else FaultCounts()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be an int >= 0, got {workers!r}")
    if differentiable:
        if executor != "local":
            raise ConfigError(f"a differentiable (FO-SOL) step runs in this process; executor {executor!r} cannot")
        if not solver.capabilities.differentiable:
            raise SolverError(
                f"solver {solver.name!r} is not differentiable; use a zeroth-order method "
                "(--method zo-sol) or NON instead of fo-sol"
            )
        local = VectorizedExecutor(differentiable=True)
        return GuardedStep(local, solver, policy, counts, owns_executor=True, differentiable=True)
    if isinstance(executor, SolverExecutor):
        return GuardedStep(executor, solver, policy, counts)
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)} or a SolverExecutor, got {executor!r}")
    if scheduler is not None and executor != "dask":
        raise ConfigError(f"scheduler={scheduler!r} is only used with executor 'dask', not {executor!r}")
    if executor == "local":
        deadline = own_deadline(solver)
        if policy.timeout_s is not None and deadline is not None and deadline > policy.timeout_s:
            # let the adapter kill and restart a hung program rather than abandon it
            solver.timeout_s = policy.timeout_s  # type: ignore[attr-defined]
        return GuardedStep(VectorizedExecutor(), solver, policy, counts, owns_executor=True)
    if solver_spec is None:
        raise ConfigError(
            f"executor {executor!r} needs solver_spec=(registered name, options) so that workers can build the solver"
        )
    factory, options = solver_spec
    ex: SolverExecutor
    if executor == "process":
        ex = ProcessPoolSolverExecutor(
            factory, options, max_workers=workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker
        )
    else:
        ex = DaskSolverExecutor(
            factory, options, n_workers=workers or None, scheduler=scheduler, threads_per_worker=threads_per_worker
        )
    return GuardedStep(ex, solver, policy, counts, owns_executor=True)
