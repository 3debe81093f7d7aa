"""A solver wrapper that injects faults or delays, to test a setup's fault handling and scaling.

:class:`FlakySolver` answers one query per call (it declares itself
unbatched, so executors send it one member at a time) and, drawing from its
own seeded stream, raises, returns NaN or hangs for a set fraction of calls.
:func:`make_flaky_solver` builds it from a registered solver name, so worker
processes can build it from a spec too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError, SolverError
from sciml_zoo.registry import make_solver
from sciml_zoo.solver import Capabilities, Solver

__all__ = ["FlakySolver", "make_flaky_solver"]


class FlakySolver:
    """Wrap ``inner``; per call, fail with the given probabilities.

    Args:
        inner: the real solver.
        raise_rate: fraction of calls that raise :class:`SolverError`.
        nan_rate: fraction of calls whose result is NaN.
        hang_rate: fraction of calls that sleep ``hang_s`` before answering.
        hang_s: length of a hang in seconds (set it above the policy's timeout).
        delay_s: seconds every call sleeps before answering: an expensive code
            that waits on its own cluster, costing no CPU here.
        seed: seed of the fault stream (deterministic for sequential calls).

    Attributes:
        injected: counts of injected ``raise``, ``nan`` and ``hang`` faults.
    """

    def __init__(
        self,
        inner: Solver,
        *,
        raise_rate: float = 0.0,
        nan_rate: float = 0.0,
        hang_rate: float = 0.0,
        hang_s: float = 3600.0,
        delay_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        rates = (raise_rate, nan_rate, hang_rate)
        if min(rates) < 0 or sum(rates) > 1:
            raise ConfigError(f"fault rates must be >= 0 with a sum <= 1, got {rates}")
        self.inner = inner
        self.name = f"flaky({getattr(inner, 'name', 'solver')})"
        self.param_names = tuple(getattr(inner, "param_names", ()))
        self.raise_rate, self.nan_rate, self.hang_rate = (float(r) for r in rates)
        self.hang_s, self.delay_s = float(hang_s), float(delay_s)
        self.capabilities = Capabilities(differentiable=False, batched=False)
        self.injected = {"raise": 0, "nan": 0, "hang": 0}
        self._rng = random.Random(seed)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.inner.state_shape)

    def __getattr__(self, item: str) -> Any:  # initial_state, downsample, valid_mask, ...
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        if self.delay_s:
            time.sleep(self.delay_s)
        u = self._rng.random()
        if u < self.raise_rate:
            self.injected["raise"] += 1
            raise SolverError(f"{self.name}: injected failure")
        u -= self.raise_rate
        if u < self.nan_rate:
            self.injected["nan"] += 1
            return torch.full_like(self.inner.step(state, params), float("nan"))
        u -= self.nan_rate
        if u < self.hang_rate:
            self.injected["hang"] += 1
            time.sleep(self.hang_s)
        return self.inner.step(state, params)


def make_flaky_solver(*, inner: str, inner_options: Mapping[str, Any] | None = None, **faults: Any) -> FlakySolver:
    """Factory: ``FlakySolver(make_solver(inner, **inner_options), **faults)``."""
    return FlakySolver(make_solver(inner, **dict(inner_options or {})), **faults)
