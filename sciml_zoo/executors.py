"""Run a batch of independent solver queries behind one executor interface.

A zeroth-order estimator asks for many independent *sample-steps*
``(state (C,H,W), params (P,)) -> state``. A batched adapter answers them in
one call (:class:`VectorizedExecutor`); an unbatched one (a Fortran code, a
closed binary) is fanned out to worker processes
(:class:`ProcessPoolSolverExecutor`), DeepZero's "forward parallelization".
Both follow ``concurrent.futures``: :meth:`SolverExecutor.submit` returns a
:class:`~concurrent.futures.Future`, ``shutdown`` and ``with`` release
resources, and :func:`make_parallel_step` turns either into a black-box
:data:`~sciml_zoo.solver.StepFn`. The idea follows nevergrad's
``minimize(executor=...)``.

Workers receive the exact state of every query and build the solver once; the
network never lives in a worker, so no worker can evaluate stale weights (a
bug of DeepZero's distributed code).
"""

from __future__ import annotations

import math
import multiprocessing
import pickle
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError, SolverError
from sciml_zoo.solver import Solver, StepFn, check_state

__all__ = [
    "ProcessPoolSolverExecutor",
    "SolverExecutor",
    "VectorizedExecutor",
    "make_parallel_step",
]


class SolverExecutor:
    """Evaluate ``N`` independent sample-steps; results come back in order.

    Subclasses implement :meth:`submit`. ``solver`` is the caller's local
    instance: the vectorized executor calls it, the process pool only uses it
    to name errors (its workers own their copy).
    """

    def submit(self, solver: Solver, states: Tensor, params: Tensor) -> Future[Tensor]:
        """Schedule ``states`` (N,C,H,W) with ``params`` (N,P); the future holds (N,C,H,W)."""
        raise NotImplementedError

    def evaluate(self, solver: Solver, states: Tensor, params: Tensor) -> Tensor:
        """Blocking form of :meth:`submit`."""
        return self.submit(solver, states, params).result()

    def shutdown(self, wait: bool = True) -> None:
        """Release workers, if any."""

    def __enter__(self) -> SolverExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class VectorizedExecutor(SolverExecutor):
    """Answer all queries with batched ``solver.step`` calls in this process.

    Args:
        chunk_size: rows per call, or ``None`` for a single call. The last
            chunk is padded by repeating its last row, so a jit-compiled
            solver always sees the same batch size and never retraces; the
            padding is stripped from the result.
    """

    def __init__(self, chunk_size: int | None = None) -> None:
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ConfigError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        self.chunk_size = chunk_size

    def submit(self, solver: Solver, states: Tensor, params: Tensor) -> Future[Tensor]:
        future: Future[Tensor] = Future()
        try:
            future.set_result(self._run(solver, states, params))
        except BaseException as exc:  # delivered through the future, as concurrent.futures does
            future.set_exception(exc)
        return future

    def _run(self, solver: Solver, states: Tensor, params: Tensor) -> Tensor:
        size = self.chunk_size
        if size is None:
            return solver.step(states, params)
        out = []
        for start in range(0, len(states), size):
            s, p = states[start : start + size], params[start : start + size]
            real = len(s)
            if real < size:  # pad by repeating the last row
                s = torch.cat([s, s[-1:].expand(size - real, *s.shape[1:])])
                p = torch.cat([p, p[-1:].expand(size - real, *p.shape[1:])])
            out.append(solver.step(s, p)[:real])
        return torch.cat(out)


# --------------------------------------------------------------------------- worker side
_WORKER_SOLVER: Solver | None = None


def _init_worker(factory: str | Callable[..., Solver], options: dict[str, Any], threads: int):
    """Process initializer: build the solver once per worker."""
    global _WORKER_SOLVER
    torch.set_num_threads(threads)
    if isinstance(factory, str):
        from sciml_zoo.registry import make_solver

        _WORKER_SOLVER = make_solver(factory, **options)
    else:
        _WORKER_SOLVER = factory(**options)


def _worker_rows(states: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Step each row on its own (a batch of one) and return the stacked results."""
    if _WORKER_SOLVER is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("solver worker was not initialised")
    out = []
    with torch.no_grad():
        for s, p in zip(states, params, strict=True):
            result = _WORKER_SOLVER.step(torch.from_numpy(s[None]), torch.from_numpy(p[None]))
            out.append(torch.as_tensor(result).detach().cpu().numpy()[0])
    return np.stack(out)


# --------------------------------------------------------------------------- parent side
class ProcessPoolSolverExecutor(SolverExecutor):
    """Fan sample-steps out to a ``ProcessPoolExecutor`` (spawn context).

    Each worker builds its solver once, from a picklable factory, in the pool
    initializer; then rows are sent as NumPy arrays in blocks of
    ``rows_per_task`` and stepped one at a time.

    Args:
        factory: a registered solver name (built with
            :func:`sciml_zoo.registry.make_solver`) or a module-level callable
            returning a solver.
        options: keyword options for the factory (must be picklable).
        max_workers: worker processes.
        rows_per_task: rows per submitted task; ``None`` splits a batch evenly
            over the workers.
        threads_per_worker: ``torch.set_num_threads`` inside each worker.
    """

    def __init__(
        self,
        factory: str | Callable[..., Solver],
        options: Mapping[str, Any] | None = None,
        max_workers: int = 2,
        *,
        rows_per_task: int | None = None,
        threads_per_worker: int = 1,
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"max_workers must be a positive int, got {max_workers!r}")
        if rows_per_task is not None and rows_per_task < 1:
            raise ConfigError(f"rows_per_task must be a positive int or None, got {rows_per_task}")
        options = dict(options or {})
        try:
            pickle.dumps((factory, options))
        except Exception as exc:
            raise ConfigError(
                f"solver factory {factory!r} and its options must be picklable for worker "
                f"processes ({exc}); pass a registered solver name or a module-level function"
            ) from exc
        self.factory, self.options = factory, options
        self.max_workers, self.rows_per_task = max_workers, rows_per_task
        self._pool = ProcessPoolExecutor(
            max_workers=max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(factory, options, threads_per_worker),
        )

    def submit(self, solver: Solver, states: Tensor, params: Tensor) -> Future[Tensor]:
        s = states.detach().cpu().numpy()
        p = params.detach().cpu().numpy()
        n = len(s)
        block = self.rows_per_task or max(1, math.ceil(n / self.max_workers))
        parts = [self._pool.submit(_worker_rows, s[i : i + block], p[i : i + block]) for i in range(0, n, block)]
        return _gather(parts, block, n, getattr(solver, "name", "solver"), states)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def _gather(parts: list[Future], block: int, n: int, who: str, like: Tensor) -> Future[Tensor]:
    """One future that completes when all blocks have, concatenating them in order."""
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
        for k, part in enumerate(parts):
            if (exc := part.exception()) is not None:
                err = SolverError(
                    f"{who}.step failed in a worker process on rows {k * block}.."
                    f"{min(n, k * block + block) - 1}: {type(exc).__name__}: {exc}"
                )
                err.__cause__ = exc
                combined.set_exception(err)
                return
        out = torch.from_numpy(np.concatenate([part.result() for part in parts]))
        combined.set_result(out.to(like.device))

    for part in parts:
        part.add_done_callback(done)
    return combined


def make_parallel_step(solver: Solver, executor: SolverExecutor) -> StepFn:
    """A black-box step ``(B,C,H,W), (B,P) -> (B,C,H,W)`` that runs on ``executor``.

    Inputs are detached and evaluated without autograd; outputs are checked
    with :func:`~sciml_zoo.solver.check_state` (shape, dtype, NaN) and
    returned as fresh leaves on the input's device.
    """
    name = getattr(solver, "name", "solver")

    def step(state: Tensor, params: Tensor) -> Tensor:
        with torch.no_grad():
            out = executor.evaluate(solver, state.detach(), params.detach())
        check_state(out, solver.state_shape, who=f"{name}.step", batch=len(state))
        return out.detach().to(state.device)

    step.__name__ = f"parallel({name}, {type(executor).__name__})"
    return step
