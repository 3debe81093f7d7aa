"""Train several runs at once, one worker process each (``compare --jobs N``).

The runs of a comparison (method x seed) are independent, and each trains on
one core (``torch.set_num_threads``), so ``N`` worker processes finish them in
about ``1/N`` of the time on ``N`` cores. A worker is a fresh interpreter
(spawn: no forked OpenMP or lock state) that gets only data: the run's config,
folder and dataset file, the parent's :class:`~sciml_zoo.registry.SolverTrust`
(what the user allowed on the command line), the solvers registered at
runtime and the thread count. Its results are the same bits as the same run
trained in the parent (a test checks): every random stream is seeded by the
run's config, and the thread count is the parent's.

A run that fails with a :class:`~sciml_zoo.errors.SciMLZooError` (diverged, its
solver failed) comes back as its one-line reason; Ctrl-C reaches the workers
with the parent (one process group) and SIGTERM to the parent is passed on,
so every worker checkpoints its last completed iteration and a rerun resumes.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import torch

from sciml_zoo.config import RunConfig
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.errors import ConfigError, SciMLZooError
from sciml_zoo.interrupts import Interrupted, interruptible
from sciml_zoo.registry import SolverTrust, register, solver_trust, worker_context
from sciml_zoo.solver import Solver
from sciml_zoo.train.loop import train

__all__ = ["PoolRun", "train_in_pool"]


@dataclass(frozen=True)
class PoolRun:
    """One run to train: its config, folder and a name for messages."""

    name: str
    config: RunConfig
    dir: Path


def _init(threads: int, solvers: dict[str, Callable[..., Solver]]) -> None:
    torch.set_num_threads(threads)
    for name, factory in solvers.items():
        register(name, factory)


def _train(run: PoolRun, data_path: str, trust: SolverTrust) -> str | None:
    """Train ``run`` (resuming its checkpoint); ``None`` or the one-line reason it failed."""
    resume = (run.dir / "checkpoint.pt").is_file()
    try:
        with solver_trust(trust):
            train(run.config, run.dir, resume=resume, progress=False, data=load_dataset(data_path))
    except SciMLZooError as exc:
        return str(exc)
    return None


def _shippable(
    trust: SolverTrust, solver: str, registered: dict[str, Callable[..., Solver]]
) -> dict[str, Callable[..., Solver]]:
    """The runtime-registered solvers a worker can receive (picklable by reference); one line if
    the run's own ``solver`` or the user's options cannot be sent."""
    try:
        pickle.dumps(trust)
    except Exception as exc:
        raise ConfigError(f"the solver options cannot be sent to worker processes ({exc}); use --jobs 1") from exc
    ok: dict[str, Callable[..., Solver]] = {}
    for name, factory in registered.items():
        try:
            pickle.dumps(factory)
        except Exception as exc:
            if name in (solver, trust.solver):
                raise ConfigError(
                    f"solver {name!r} was registered in this process with a factory that cannot be sent to worker "
                    f"processes ({exc}); use --jobs 1 (jobs=1), or register a module-level function"
                ) from exc
            continue
        ok[name] = factory
    return ok


def train_in_pool(
    runs: Sequence[PoolRun], data_path: str | Path, *, solver: str, jobs: int, progress: bool = True
) -> dict[str, str | None]:
    """Train ``runs`` in ``jobs`` worker processes; map each run's name to ``None`` or why it failed.

    Args:
        runs: the runs to train (a finished one must not be among them).
        data_path: the dataset file every run trains on (each worker loads it).
        solver: the solver the dataset names (it must reach the workers).
        jobs: worker processes (at most one per run).
        progress: one line per finished run on stderr (workers draw no bars).
    """
    trust, registered = worker_context()
    trust = trust or SolverTrust()
    solvers = _shippable(trust, solver, registered)
    outcome: dict[str, str | None] = {}
    if not runs:
        return outcome
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(
        max_workers=max(1, min(jobs, len(runs))),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init,
        initargs=(torch.get_num_threads(), solvers),
    )
    try:
        with interruptible():
            pending: dict[Future[str | None], PoolRun] = {}
            for run in runs:
                pending[pool.submit(_train, run, str(data_path), trust)] = run
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    run = pending.pop(future)
                    outcome[run.name] = future.result()
                    if progress:
                        how = "done" if outcome[run.name] is None else "failed"
                        print(
                            f"[{len(outcome)}/{len(runs)}] {run.name}: {how} at {time.perf_counter() - t0:.0f} s",
                            file=sys.stderr,
                        )
    except BrokenProcessPool as exc:  # a worker died: killed (memory), or a script without a main guard
        raise SciMLZooError(
            f"a worker process of --jobs {jobs} died ({exc}); finished runs are kept and a rerun resumes the others. "
            "Out of memory? use fewer --jobs. From a Python script: call compare(jobs=...) under "
            "if __name__ == '__main__':"
        ) from None
    except Interrupted as exc:
        if exc.signum == signal.SIGTERM:  # Ctrl-C reached the workers already (one process group)
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGTERM)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcome
