"""The executor interface, the in-process executor and the black-box step over any executor.

A zeroth-order estimator asks for many independent *sample-steps*
``(state (C, *spatial), params (P,)) -> state``. An executor answers a batch of
them; results always come back in the order of the rows. Two levels:

* :meth:`SolverExecutor.submit` — the whole batch, all or nothing, as a
  :class:`~concurrent.futures.Future` (the ``concurrent.futures`` style of
  nevergrad's ``minimize(executor=...)``).
* :meth:`SolverExecutor.plan` and :meth:`SolverExecutor.submit_task` — the
  batch as *tasks* (row ranges), each with its own deadline, so that the fault
  policy (:mod:`sciml_zoo.faults`) can retry only the members that failed.

``timeout_s`` of a task bounds one adapter call: a batched adapter answers a
task in one ``step`` call, an unbatched one (a closed binary) in one call per
row, so its deadline is ``timeout_s`` per row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import torch
from torch import Tensor

from sciml_zoo.errors import SolverError, check_positive_int
from sciml_zoo.solver import Solver, StepFn, check_state

__all__ = [
    "QueryTimeout",
    "SolverExecutor",
    "VectorizedExecutor",
    "call_with_timeout",
    "make_parallel_step",
    "task_deadline",
]

T = TypeVar("T")


class QueryTimeout(SolverError):
    """A solver query did not answer within the fault policy's ``timeout_s``.

    Not a subclass of the built-in ``TimeoutError`` (an ``OSError``): the two
    bases' layouts clash when the exception is pickled back from a worker.

    Attributes:
        worker: address of the Dask worker or id of the process that hung, if known.
    """

    def __init__(self, message: str, worker: str = "") -> None:
        super().__init__(message)
        self.worker = worker


def is_batched(solver: Solver) -> bool:
    """Whether the adapter answers a whole batch in one ``step`` call."""
    caps = getattr(solver, "capabilities", None)
    return bool(getattr(caps, "batched", True))


def own_deadline(solver: Solver) -> float | None:
    """The adapter's own per-request deadline (an external program's ``timeout_s``), if it has one."""
    value = getattr(solver, "timeout_s", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def task_deadline(solver: Solver, rows: int, timeout_s: float | None) -> float | None:
    """Seconds a task of ``rows`` rows may take: ``timeout_s`` per adapter call.

    An adapter that enforces its own deadline (an external program, killed and
    restarted by the adapter) gets a grace period on top, so that its own
    clean kill fires first and the waiting thread is never abandoned.
    """
    if timeout_s is None:
        return None
    calls = 1 if is_batched(solver) else max(1, rows)
    base = timeout_s * calls
    return base + max(1.0, 0.25 * base) if own_deadline(solver) is not None else base


def call_with_timeout(fn: Callable[[], T], timeout_s: float | None, *, what: str, grad: bool = False) -> T:
    """Run ``fn()`` and stop waiting for it after ``timeout_s`` seconds.

    ``fn`` runs under ``torch.no_grad`` (``torch.enable_grad`` with ``grad``:
    a differentiable FO-SOL step). With a timeout, ``fn`` runs in a fresh
    daemon thread; if it has not returned in time, :class:`QueryTimeout` is
    raised and the thread is *abandoned*: Python cannot kill a thread, so a
    truly hung Python adapter keeps its thread (and whatever it holds) until
    it returns or the process exits. Use the process or Dask executor when
    hung calls must be reclaimed, or an adapter with its own deadline.
    """
    mode = torch.enable_grad if grad else torch.no_grad
    if timeout_s is None:
        with mode():
            return fn()
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            with mode():
                box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name="sciml-zoo-query").start()
    if not done.wait(timeout_s):
        raise QueryTimeout(
            f"{what} did not return within {timeout_s:g} s (timeout_s); the call was abandoned "
            "(raise timeout_s if the solver is just slow)"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]


def completed(fn: Callable[[], T]) -> Future[T]:
    """A finished future holding ``fn()`` or the exception it raised."""
    future: Future[T] = Future()
    try:
        future.set_result(fn())
    except BaseException as exc:  # delivered through the future, as concurrent.futures does
        future.set_exception(exc)
    return future


class SolverExecutor:
    """Evaluate ``N`` independent sample-steps; results come back in order.

    ``solver`` is the caller's local instance: the in-process executor calls
    it, the pools only use it for its name and capabilities (their workers own
    copies). ``restarts`` counts solver workers or external programs restarted
    so far (read by the fault policy).
    """

    restarts: int = 0
    differentiable: bool = False
    """Calls keep autograd (in-process executors only; for FO-SOL's guarded step)."""

    def submit(self, solver: Solver, states: Tensor, params: Tensor) -> Future[Tensor]:
        """Schedule ``states`` (N, C, *spatial) with ``params`` (N, P); the future holds (N, C, *spatial)."""
        raise NotImplementedError

    def evaluate(self, solver: Solver, states: Tensor, params: Tensor) -> Tensor:
        """Blocking form of :meth:`submit`."""
        return self.submit(solver, states, params).result()

    def plan(self, solver: Solver, n: int) -> list[range]:
        """Row ranges of the tasks a fresh batch of ``n`` queries is split into."""
        if is_batched(solver):
            return [range(0, n)] if n else []
        return [range(i, i + 1) for i in range(n)]

    def submit_task(
        self, solver: Solver, states: Tensor, params: Tensor, *, timeout_s: float | None = None
    ) -> Future[Tensor]:
        """One task; its future raises :class:`QueryTimeout` past :func:`task_deadline`.

        The default runs :meth:`submit` in this process, in a thread when a
        timeout is set (see :func:`call_with_timeout`), and returns a finished
        future: tasks run one after another.
        """
        before = int(getattr(solver, "restarts", 0))
        deadline = task_deadline(solver, len(states), timeout_s)
        name = getattr(solver, "name", "solver")
        future = completed(
            lambda: call_with_timeout(
                lambda: self.submit(solver, states, params).result(),
                deadline,
                what=f"{name}.step",
                grad=self.differentiable,
            )
        )
        self.restarts += int(getattr(solver, "restarts", 0)) - before
        return future

    def submit_tasks(
        self, solver: Solver, blocks: list[tuple[Tensor, Tensor]], *, timeout_s: float | None = None
    ) -> list[Future[Tensor]]:
        """Several tasks at once (one message to a cluster's scheduler); futures in order."""
        return [self.submit_task(solver, s, p, timeout_s=timeout_s) for s, p in blocks]

    def recover(self) -> None:
        """Repair what failed tasks broke (restart hung or dead workers); called between retries."""

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
        differentiable: run the solver with autograd on (FO-SOL's guarded
            step); otherwise under ``torch.no_grad``.
    """

    def __init__(self, chunk_size: int | None = None, *, differentiable: bool = False) -> None:
        check_positive_int("chunk_size", chunk_size, optional=True)
        self.chunk_size = chunk_size
        self.differentiable = differentiable
        self.restarts = 0

    def submit(self, solver: Solver, states: Tensor, params: Tensor) -> Future[Tensor]:
        return completed(lambda: self._run(solver, states, params))

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


def make_parallel_step(solver: Solver, executor: SolverExecutor) -> StepFn:
    """A black-box step ``(B, C, *spatial), (B, P) -> (B, C, *spatial)`` that runs on ``executor``.

    Inputs are detached and evaluated without autograd; outputs are checked
    with :func:`~sciml_zoo.solver.check_state` (shape, dtype, NaN) and
    returned as fresh leaves on the input's device. No fault tolerance: see
    :func:`sciml_zoo.faults.make_query_step` for that.
    """
    name = getattr(solver, "name", "solver")

    def step(state: Tensor, params: Tensor) -> Tensor:
        with torch.no_grad():
            out = executor.evaluate(solver, state.detach(), params.detach())
        check_state(out, solver.state_shape, who=f"{name}.step", batch=len(state), dtype=state.dtype)
        return out.detach().to(state.device)

    step.__name__ = f"parallel({name}, {type(executor).__name__})"
    return step
