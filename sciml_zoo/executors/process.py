"""Fan sample-steps out to a local pool of worker processes."""

from __future__ import annotations

import math
import multiprocessing
import pickle
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError, SolverError, check_positive_int
from sciml_zoo.executors.base import QueryTimeout, SolverExecutor, is_batched
from sciml_zoo.executors.worker import Factory, run_task
from sciml_zoo.solver import Solver

__all__ = ["ProcessPoolSolverExecutor", "check_spec", "gather"]


def check_spec(factory: Factory, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check that a solver spec can be shipped to workers; return the options as a dict."""
    options = dict(options or {})
    if not isinstance(factory, str) and not callable(factory):
        raise ConfigError(f"solver factory must be a registered name or a callable, got {factory!r}")
    try:
        pickle.dumps((factory, options))
    except Exception as exc:
        raise ConfigError(
            f"solver factory {factory!r} and its options must be picklable for worker "
            f"processes ({exc}); pass a registered solver name or a module-level function"
        ) from exc
    return options


def split_rows(n: int, slots: int, rows_per_task: int | None, batched: bool) -> list[range]:
    """Row ranges of the tasks: ``rows_per_task`` each, else an even split over ``slots`` for a
    batched adapter (one ``step`` call per worker) and one row per task for an unbatched one."""
    if rows_per_task is not None:
        block = rows_per_task
    elif batched:
        block = max(1, math.ceil(n / max(1, slots)))
    else:
        block = 1
    return [range(i, min(n, i + block)) for i in range(0, n, block)]


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


class ProcessPoolSolverExecutor(SolverExecutor):
    """Fan sample-steps out to a ``ProcessPoolExecutor`` (spawn context).

    Each worker builds its solver once from ``(factory, options)`` and keeps
    it (:mod:`sciml_zoo.executors.worker`); rows travel as NumPy arrays. A
    worker process that dies (killed, segfault) breaks the pool: the affected
    tasks fail (the fault policy retries them) and the pool is rebuilt, each
    replaced worker counted in ``restarts``. A task past its deadline raises
    :class:`~sciml_zoo.executors.base.QueryTimeout` from the worker; at
    :meth:`recover` (between retry rounds) the hung worker is killed with the
    thread it still runs and the pool replaced (an external program is
    killed by its own adapter deadline first and needs none of this).

    Args:
        factory: a registered solver name (built with
            :func:`sciml_zoo.registry.make_solver`) or a module-level callable
            returning a solver.
        options: keyword options for the factory (must be picklable).
        max_workers: worker processes.
        rows_per_task: rows per submitted task; ``None`` splits a batch evenly
            over the workers for a batched adapter, one row per task otherwise.
        threads_per_worker: ``torch.set_num_threads`` inside each worker.
    """

    def __init__(
        self,
        factory: Factory,
        options: Mapping[str, Any] | None = None,
        max_workers: int = 2,
        *,
        rows_per_task: int | None = None,
        threads_per_worker: int = 1,
    ) -> None:
        check_positive_int("max_workers", max_workers)
        check_positive_int("rows_per_task", rows_per_task, optional=True)
        self.factory: Factory = factory
        self.options = check_spec(factory, options)
        self.max_workers, self.rows_per_task = max_workers, rows_per_task
        self.threads_per_worker = threads_per_worker
        self.restarts = 0
        self._lock = threading.Lock()
        self._broken: ProcessPoolExecutor | None = None
        self._hung: set[int] = set()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads_per_worker,),
        )

    def plan(self, solver: Solver, n: int) -> list[range]:
        return split_rows(n, self.max_workers, self.rows_per_task, is_batched(solver))

    def submit_task(
        self, solver: Solver, states: Tensor, params: Tensor, *, timeout_s: float | None = None
    ) -> Future[Tensor]:
        self.recover()
        s = states.detach().cpu().numpy()
        p = params.detach().cpu().numpy()
        pool = self._pool
        result: Future[Tensor] = Future()
        try:
            raw = pool.submit(run_task, self.factory, self.options, s, p, timeout_s)
        except BrokenProcessPool as exc:
            self._mark_broken(pool)
            result.set_exception(exc)
            return result

        def done(f: Future) -> None:
            exc = f.exception()
            if exc is not None:
                if isinstance(exc, BrokenProcessPool):
                    self._mark_broken(pool)
                if isinstance(exc, QueryTimeout) and exc.worker.startswith("pid "):
                    with self._lock:
                        self._hung.add(int(exc.worker[4:]))
                result.set_exception(exc)
                return
            out, restarts = f.result()
            with self._lock:
                self.restarts += restarts
            result.set_result(torch.from_numpy(out).to(states.device))

        raw.add_done_callback(done)
        return result

    def _mark_broken(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._broken = pool

    def recover(self) -> None:
        """Replace the pool if a worker died or hung; count the replaced worker processes.

        Called by the fault policy once all tasks of a round are collected, so
        no task is in flight: hung workers (whose tasks timed out) are killed
        first, with the threads they still run.
        """
        with self._lock:
            hung, self._hung = self._hung, set()
            pool = self._pool
            if self._broken is not pool and not hung:
                self._broken = None
                return
            self._broken = None
            processes = list((getattr(pool, "_processes", None) or {}).values())
            for proc in processes:
                if proc.pid in hung and proc.exitcode is None:
                    proc.kill()
            self.restarts += max(1, len(processes))
            self._pool = self._new_pool()
        pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, solver: Solver, states: Tensor, params: Tensor) -> Future[Tensor]:
        ranges = self.plan(solver, len(states))
        parts = [self.submit_task(solver, states[r.start : r.stop], params[r.start : r.stop]) for r in ranges]
        return gather(parts, ranges, getattr(solver, "name", "solver"), states, where="a worker process")

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def gather(parts: Sequence[Future], ranges: Sequence[range], who: str, like: Tensor, *, where: str) -> Future[Tensor]:
    """One future that completes when all tasks have, concatenating their rows in order."""
    combined: Future[Tensor] = Future()
    if not parts:
        combined.set_result(like.detach().clone())
        return combined
    remaining, lock = [len(parts)], threading.Lock()

    def done(_: Future) -> None:
        with lock:  # callbacks may run in the pool's thread and in the submitting one
            remaining[0] -= 1
            if remaining[0]:
                return
        for rows, part in zip(ranges, parts, strict=True):
            if (exc := part.exception()) is not None:
                err = SolverError(
                    f"{who}.step failed in {where} on rows {rows.start}..{rows.stop - 1}: {type(exc).__name__}: {exc}"
                )
                err.__cause__ = exc
                combined.set_exception(err)
                return
        out = torch.cat([part.result() for part in parts])
        combined.set_result(out.to(like.device))

    for part in parts:
        part.add_done_callback(done)
    return combined
