"""Run a batch of independent solver queries behind one executor interface.

A zeroth-order estimator asks for many independent *sample-steps*
``(state (C, *spatial), params (P,)) -> state``. A batched adapter answers them
in one call (:class:`VectorizedExecutor`); an unbatched one (a Fortran code, a
closed binary) is fanned out to worker processes
(:class:`ProcessPoolSolverExecutor`), DeepZero's "forward parallelization", or
to a Dask cluster (:class:`DaskSolverExecutor`), from a laptop's
``LocalCluster`` to SLURM/PBS/MPI allocations. All follow
``concurrent.futures``: :meth:`SolverExecutor.submit` returns a
:class:`~concurrent.futures.Future`, ``shutdown`` and ``with`` release
resources, and :func:`make_parallel_step` turns any of them into a black-box
:data:`~sciml_zoo.solver.StepFn`. The idea follows nevergrad's
``minimize(executor=...)``. The fault policy (timeouts, retries of failed
members, counts) is :mod:`sciml_zoo.faults`, the same for every executor.

Workers receive the exact state of every query and build the solver once; the
network never lives in a worker, so no worker can evaluate stale weights (a
bug of DeepZero's distributed code).
"""

from sciml_zoo.executors.base import QueryTimeout, SolverExecutor, VectorizedExecutor, make_parallel_step
from sciml_zoo.executors.dask_executor import DaskSolverExecutor
from sciml_zoo.executors.process import ProcessPoolSolverExecutor

__all__ = [
    "DaskSolverExecutor",
    "ProcessPoolSolverExecutor",
    "QueryTimeout",
    "SolverExecutor",
    "VectorizedExecutor",
    "make_parallel_step",
]
