"""Worker side of the process-pool and Dask executors.

A worker builds its solver once from the spec ``(factory, options)`` (a
registered name or a module-level callable, and its keyword options) and keeps
it in a per-process cache, one instance per worker thread (so an external
program stays alive across queries, and two threads never share one). The
driver sends NumPy states and parameters only, never the network, so no worker
can evaluate stale weights.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from sciml_zoo.executors.base import QueryTimeout, call_with_timeout, is_batched, own_deadline, task_deadline
from sciml_zoo.registry import make_solver
from sciml_zoo.solver import Solver

__all__ = ["Factory", "build_solver", "cached_solver", "run_task", "spec_key", "step_rows"]

Factory = str | Callable[..., Solver]

_CACHE: dict[tuple[str, int], Solver] = {}
_LOCK = threading.Lock()


def spec_key(factory: Factory, options: Mapping[str, Any]) -> str:
    """A stable text key of a solver spec (cache key in the workers)."""
    name = factory if isinstance(factory, str) else f"{factory.__module__}:{factory.__qualname__}"
    return f"{name}|{json.dumps(dict(options), sort_keys=True, default=repr)}"


def build_solver(factory: Factory, options: Mapping[str, Any]) -> Solver:
    """Build a solver from a registered name or a callable."""
    if isinstance(factory, str):
        return make_solver(factory, **options)
    return factory(**options)


def cached_solver(factory: Factory, options: Mapping[str, Any]) -> Solver:
    """This worker thread's solver for the spec, built on first use."""
    key = (spec_key(factory, options), threading.get_ident())
    with _LOCK:
        solver = _CACHE.get(key)
    if solver is None:
        solver = build_solver(factory, options)
        with _LOCK:
            _CACHE[key] = solver
    return solver


def _evict(factory: Factory, options: Mapping[str, Any]) -> None:
    with _LOCK:
        _CACHE.pop((spec_key(factory, options), threading.get_ident()), None)


def step_rows(solver: Solver, states: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Step a block of rows: one call if the adapter is batched, else one call per row."""
    with torch.no_grad():
        if is_batched(solver):
            out = solver.step(torch.from_numpy(states), torch.from_numpy(params))
            return torch.as_tensor(out).detach().cpu().numpy()
        rows = []
        for s, p in zip(states, params, strict=True):
            result = solver.step(torch.from_numpy(s[None]), torch.from_numpy(p[None]))
            rows.append(torch.as_tensor(result).detach().cpu().numpy()[0])
        return np.stack(rows) if rows else states.copy()


def _where() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def run_task(
    factory: Factory,
    options: Mapping[str, Any],
    states: np.ndarray,
    params: np.ndarray,
    timeout_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Answer one task in a worker; return ``(next states, adapter restarts during the task)``.

    With ``timeout_s`` the adapter runs in a helper thread and the task raises
    :class:`QueryTimeout` past :func:`task_deadline`; the hung solver is
    dropped from the cache (the next task builds a fresh one) and its thread
    is left behind until the executor restarts the worker. An adapter with its
    own deadline (an external program) gets ``timeout_s`` as that deadline, so
    it kills and restarts a hung program itself.
    """
    solver = cached_solver(factory, options)
    if timeout_s is not None and own_deadline(solver) is not None:
        solver.timeout_s = min(own_deadline(solver) or timeout_s, timeout_s)  # type: ignore[attr-defined]
    before = int(getattr(solver, "restarts", 0))
    deadline = task_deadline(solver, len(states), timeout_s)
    try:
        out = call_with_timeout(lambda: step_rows(solver, states, params), deadline, what=f"{solver.name}.step")
    except QueryTimeout as exc:
        _evict(factory, options)
        raise QueryTimeout(f"{exc} [worker {_where()}]", worker=_where()) from None
    return out, int(getattr(solver, "restarts", 0)) - before
