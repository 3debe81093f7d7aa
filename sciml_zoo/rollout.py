"""The one rollout rule: a solver step, then an additive correction, repeated.

:func:`corrected_step` composes a solver step with a correction (Um et al.
2020, Eq. 3: ``s_{t+1} = P_s(s_t) + C(P_s(s_t))``) and :func:`trajectory`
unrolls any step function (jax-cfd's ``learned_corrector`` +
``funcutils.trajectory``). Training (NON, FO-SOL, ZO-SOL) and evaluation go
through these two functions. The rule is spelled out in two more places, both
for DeepZero's feature reuse: :func:`corrected_rollout` applies the correction
to a first solver output the caller supplies, and the weight-space batched
loss (:func:`~sciml_zoo.train.objective.make_batched_sol_loss`) adds a first
correction computed from cached features; tests check both against one
plain rollout per query.

States are ``(B, C, *spatial)`` with 1 to 3 spatial dimensions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sciml_zoo.solver import StepFn

__all__ = ["Correction", "trajectory", "corrected_step", "corrected_rollout"]

Correction = Callable[[Tensor, Tensor], Tensor]
"""``correction(state (B, C, *spatial), params (B, P)) -> additive correction (B, C, *spatial)``."""


def trajectory(step: StepFn, state: Tensor, params: Tensor, num_steps: int) -> Tensor:
    """Apply ``step`` ``num_steps`` times; return states 1..n as ``(B, n, C, *spatial)``.

    ``num_steps = 0`` returns an empty ``(B, 0, C, *spatial)`` tensor.
    """
    states = []
    for _ in range(num_steps):
        state = step(state, params)
        states.append(state)
    if not states:
        return state.new_empty((state.shape[0], 0, *state.shape[1:]))
    return torch.stack(states, dim=1)


def corrected_step(step: StepFn, correction: Correction | None) -> StepFn:
    """Compose one solver step with an additive correction applied after it.

    ``correction=None`` returns ``step`` itself (SRC: the uncorrected solver).
    """
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
    """Roll out solver + correction for ``num_steps``; return ``(B, n, C, *spatial)``.

    ``trajectory(corrected_step(step, correction), ...)``, except that the first
    solver call may be supplied.

    Args:
        step: solver step function (differentiable, black-box, or a ZO
            autograd wrapper).
        correction: network applied after every solver step, or ``None`` (SRC).
        state: initial state ``(B, C, *spatial)``.
        params: physical parameters ``(B, P)``.
        num_steps: number of steps ``n``.
        first_solver_output: ``step(state, params)`` if the caller already has
            it. The first solver call does not depend on the network, so
            training reuses it across queries (DeepZero's feature reuse).
    """
    composed = corrected_step(step, correction)
    if first_solver_output is None or num_steps == 0:
        return trajectory(composed, state, params, num_steps)
    predicted = first_solver_output
    first = predicted if correction is None else predicted + correction(predicted, params)
    rest = trajectory(composed, first, params, num_steps - 1)
    return torch.cat([first[:, None], rest], dim=1)
