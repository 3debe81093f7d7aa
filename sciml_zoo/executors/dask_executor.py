"""Send sample-steps to a Dask cluster: a laptop's ``LocalCluster`` or a SLURM/PBS/MPI one.

The same code runs in both places: by default a ``LocalCluster`` is started
for the run; ``scheduler="tcp://host:8786"`` connects to one that is already
running (started with dask-jobqueue's ``SLURMCluster`` / ``PBSCluster``, with
``dask-mpi``, or by hand with ``dask scheduler`` / ``dask worker``). See
``docs/cluster.md``.

Each worker builds the solver once from its spec and keeps it
(:mod:`sciml_zoo.executors.worker`); tasks carry NumPy states and parameters
only. A batched adapter gets one chunk per worker thread, answered in one
``step`` call; an unbatched one gets one row per task.

Faults: the driver, not Dask's ``retries=``, resubmits failed members (so
that retries are counted and only failed members are resent). A task past its
deadline raises :class:`~sciml_zoo.executors.base.QueryTimeout` in the worker;
:meth:`DaskSolverExecutor.recover` then restarts that worker process through
its nanny (the hung thread goes with it) and counts the restart. A worker that
dies mid-task is handled by Dask itself: the scheduler reruns its tasks
elsewhere, up to ``distributed.scheduler.allowed-failures`` times.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError, check_positive_int
from sciml_zoo.executors.base import QueryTimeout, SolverExecutor, is_batched
from sciml_zoo.executors.process import check_spec, gather, split_rows
from sciml_zoo.executors.worker import Factory, run_task
from sciml_zoo.solver import Solver

__all__ = ["DaskSolverExecutor"]


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ConfigError(
            "executor 'dask' needs dask.distributed; install it with pip install 'sciml-zoo[dask]'"
        ) from exc
    return distributed


def _import_worker_side() -> None:
    import sciml_zoo.executors.worker  # noqa: F401 - imports torch and the library


class DaskSolverExecutor(SolverExecutor):
    """Answer sample-steps on Dask workers.

    Args:
        factory: registered solver name or module-level callable (importable
            on the workers).
        options: keyword options of the factory (picklable).
        n_workers: worker processes of the ``LocalCluster`` started when no
            ``scheduler`` is given (default: one per core).
        threads_per_worker: threads per worker (each builds its own solver).
        scheduler: address of a running scheduler (``tcp://host:8786``), or
            ``None`` to start a ``LocalCluster`` for this executor.
        processes: the ``LocalCluster``'s workers are processes (default) or
            threads in this process.
        rows_per_task: rows per task; ``None``: an even split over the worker
            threads (batched adapter) or one row per task (unbatched).
        restart_hung_workers: restart a worker whose task timed out.
        client: an existing ``distributed.Client`` to use (not closed by
            :meth:`shutdown`).
        cluster_options: extra keyword options of ``LocalCluster``.
    """

    def __init__(
        self,
        factory: Factory,
        options: Mapping[str, Any] | None = None,
        *,
        n_workers: int | None = None,
        threads_per_worker: int = 1,
        scheduler: str | None = None,
        processes: bool = True,
        rows_per_task: int | None = None,
        restart_hung_workers: bool = True,
        client: Any = None,
        cluster_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_positive_int("n_workers", n_workers, optional=True)
        check_positive_int("rows_per_task", rows_per_task, optional=True)
        check_positive_int("threads_per_worker", threads_per_worker)
        self.factory: Factory = factory
        self.options = check_spec(factory, options)
        self.rows_per_task = rows_per_task
        self.restart_hung_workers = restart_hung_workers
        self.restarts = 0
        self._lock = threading.Lock()
        self._hung: set[str] = set()
        distributed = _import_distributed()
        self._cluster = None
        self._own_client = client is None
        if client is not None:
            self.client = client
        elif scheduler is not None:
            if not isinstance(scheduler, str) or "://" not in scheduler:
                raise ConfigError(f"scheduler must be an address such as 'tcp://10.0.0.1:8786', got {scheduler!r}")
            try:
                self.client = distributed.Client(scheduler, timeout="30s")
            except OSError as exc:
                raise ConfigError(
                    f"could not reach the Dask scheduler at {scheduler} ({exc}); start it first "
                    "(see docs/cluster.md) or omit scheduler to run a LocalCluster"
                ) from exc
        else:
            self._cluster = distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads_per_worker,
                processes=processes,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                **dict(cluster_options or {}),
            )
            self.client = distributed.Client(self._cluster)
            self.client.wait_for_workers(len(self._cluster.workers), timeout=120)

    def warm_up(self) -> None:
        """Import torch and the solver code on every worker now, not during the first query."""
        self.client.run(_import_worker_side)

    @property
    def slots(self) -> int:
        """Worker threads currently in the cluster (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def plan(self, solver: Solver, n: int) -> list[range]:
        batched = is_batched(solver)
        slots = self.slots if batched and self.rows_per_task is None else 1  # an RPC: only when needed
        return split_rows(n, slots, self.rows_per_task, batched)

    def submit_task(
        self, solver: Solver, states: Tensor, params: Tensor, *, timeout_s: float | None = None
    ) -> Future[Tensor]:
        return self.submit_tasks(solver, [(states, params)], timeout_s=timeout_s)[0]

    def submit_tasks(
        self, solver: Solver, blocks: list[tuple[Tensor, Tensor]], *, timeout_s: float | None = None
    ) -> list[Future[Tensor]]:
        if not blocks:
            return []
        n = len(blocks)
        raws = self.client.map(
            run_task,
            [self.factory] * n,
            [self.options] * n,
            [s.detach().cpu().numpy() for s, _ in blocks],
            [p.detach().cpu().numpy() for _, p in blocks],
            [timeout_s] * n,
            pure=False,
        )
        return [self._wrap(raw, s.device) for raw, (s, _) in zip(raws, blocks, strict=True)]

    def _wrap(self, raw: Any, device: Any) -> Future[Tensor]:
        result: Future[Tensor] = Future()

        def done(f: Any) -> None:
            try:
                out, restarts = f.result()
            except QueryTimeout as exc:
                if exc.worker:
                    with self._lock:
                        self._hung.add(exc.worker)
                result.set_exception(exc)
                return
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                result.set_exception(exc)
                return
            with self._lock:
                self.restarts += restarts
            result.set_result(torch.from_numpy(out).to(device))

        raw.add_done_callback(done)
        result.dask_future = raw  # type: ignore[attr-defined]  # keeps the task alive until it is read
        return result

    def recover(self) -> None:
        """Restart workers whose tasks timed out (their hung threads go with them)."""
        with self._lock:
            hung, self._hung = sorted(self._hung), set()
        if not hung or not self.restart_hung_workers:
            return
        alive = set(self.client.nthreads())
        targets = [w for w in hung if w in alive]
        if not targets:
            return
        try:
            self.client.restart_workers(targets, raise_for_error=False)
        except Exception:  # noqa: BLE001 - a failed restart leaves the worker as it was
            return
        self.restarts += len(targets)

    def submit(self, solver: Solver, states: Tensor, params: Tensor) -> Future[Tensor]:
        ranges = self.plan(solver, len(states))
        parts = self.submit_tasks(solver, [(states[r.start : r.stop], params[r.start : r.stop]) for r in ranges])
        return gather(parts, ranges, getattr(solver, "name", "solver"), states, where="a Dask worker")

    def shutdown(self, wait: bool = True) -> None:
        if self._own_client:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
