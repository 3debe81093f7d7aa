"""Unroll step functions and interleave a solver with a correction network.

One function, :func:`corrected_rollout`, is used by training (NON, FO-SOL,
ZO-SOL) and evaluation alike, so the order "solver step, then correction" is
defined in exactly one place (Um et al. 2020, Eq. 3: s_{t+1} = P_s(s_t) +
C(P_s(s_t))).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sciml_zoo.solver import StepFn

__all__ = ["Correction", "trajectory", "corrected_step", "corrected_rollout"]

Correction = Callable[[Tensor, Tensor], Tensor]
"""``correction(state (B,C,H,W), params (B,P)) -> additive correction (B,C,H,W)``."""


def trajectory(step: StepFn, state: Tensor, params: Tensor, num_steps: int) -> Tensor:
    """Apply ``step`` ``num_steps`` times; return states 1..n as ``(B, n, C, H, W)``."""
    states = []
    for _ in range(num_steps):
        state = step(state, params)
        states.append(state)
    return torch.stack(states, dim=1)


def corrected_step(step: StepFn, correction: Correction | None) -> StepFn:
    """Compose one solver step with an additive correction applied after it."""
    if correction is None:
        return step

    def composed(state: Tensor, params: Tensor) -> Tensor:
        predicted = step(state, params)
        return predicted + correction(predicted, params)

    return composed


def corrected_rollout(
    step: StepFn,
    correction: Correction | None,
    state: Tensor,
    params: Tensor,
    num_steps: int,
    *,
    first_solver_output: Tensor | None = None,
) -> Tensor:
    """Roll out solver + correction for ``num_steps``; return ``(B, n, C, H, W)``.

    Args:
        step: solver step function (differentiable, black-box, or a ZO
            autograd wrapper).
        correction: network applied after every solver step, or ``None`` (SRC).
        state: initial state ``(B, C, H, W)``.
        params: physical parameters ``(B, P)``.
        num_steps: number of steps ``n``.
        first_solver_output: ``step(state, params)`` if the caller already has
            it. The first solver call does not depend on the network, so
            training reuses it across queries (DeepZero's feature reuse).
    """
    states = []
    for i in range(num_steps):
        if i == 0 and first_solver_output is not None:
            predicted = first_solver_output
        else:
            predicted = step(state, params)
        state = predicted if correction is None else predicted + correction(predicted, params)
        states.append(state)
    return torch.stack(states, dim=1)
