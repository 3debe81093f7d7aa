"""Training windows and the SOL loss, single-query and batched over weight queries.

The loss (Um et al. 2020, Eq. 4) is the squared velocity error normalised by
the training std, averaged over valid entries and the ``n`` unrolled steps.
:func:`make_batched_sol_loss` evaluates it at Q weight settings in one pass for
weight-space zeroth-order estimators: the first solver call and the network
layers before the earliest perturbed layer are computed once (DeepZero's
feature reuse), and all Q rollouts share one batched solver call per step
(forward parallelization).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import functional_call

from sciml_zoo.nn import CorrectionNet
from sciml_zoo.solver import StepFn

__all__ = ["Windows", "WindowSampler", "trajectory_loss", "make_batched_sol_loss"]


@dataclass(frozen=True)
class Windows:
    """A batch of training windows: ``initial`` (B,C,H,W) reference states at t,
    ``targets`` (B,n,C,H,W) reference states at t+1..t+n, ``params`` (B,P)."""

    initial: Tensor
    targets: Tensor
    params: Tensor


class WindowSampler:
    """Draws random windows ``(sim, t)`` from training trajectories.

    Args:
        states: ``(S, T, C, H, W)`` downsampled reference trajectories.
        params: ``(S, P)`` physical parameters.
        steps: window length n.
    """

    def __init__(self, states: Tensor, params: Tensor, *, steps: int) -> None:
        if states.shape[1] <= steps:
            raise ValueError(f"trajectories of {states.shape[1]} frames are too short for {steps} steps")
        self.states, self.params, self.steps = states, params, steps

    def sample(self, batch_size: int, generator: torch.Generator) -> Windows:
        s, t = self.states.shape[:2]
        sim = torch.randint(s, (batch_size,), generator=generator)
        start = torch.randint(t - self.steps, (batch_size,), generator=generator)
        idx = start[:, None] + torch.arange(self.steps + 1)[None]
        frames = self.states[sim[:, None], idx]
        return Windows(frames[:, 0], frames[:, 1:], self.params[sim])


def trajectory_loss(predicted: Tensor, targets: Tensor, std: Tensor, mask: Tensor) -> Tensor:
    """Normalised MSE over valid entries, averaged over steps.

    Args:
        predicted, targets: ``(..., n, C, H, W)``.
        std: ``(C,)`` training std. mask: ``(C, H, W)`` bool/float.
    Returns:
        Loss with the leading ``...`` dims (a scalar for ``(B, n, ...)`` input
        reduced over B too if ``predicted`` has exactly 5 dims).
    """
    err = ((predicted - targets) / std.view(-1, 1, 1)) ** 2 * mask
    per = err.sum(dim=(-3, -2, -1)) / mask.sum()
    return per.mean(dim=(-2, -1)) if per.dim() >= 2 else per.mean()


_LAYER = re.compile(r"^body\.(\d+)\.")


def _earliest_layer(names: list[str]) -> int:
    idx = [int(m.group(1)) for n in names if (m := _LAYER.match(n))]
    return min(idx) if len(idx) == len(names) and idx else 0


def make_batched_sol_loss(
    model: CorrectionNet, step: StepFn, windows: Windows, *, steps: int, reuse: bool = True
) -> Callable[[dict[str, Tensor]], Tensor]:
    """SOL loss at Q weight settings per call, without autograd.

    ``batched_loss(perturbed)`` takes a subset of parameter names mapped to
    stacked values ``(Q, *shape)`` (the rest stay at the model's values) and
    returns ``(Q,)`` losses. ``{}`` evaluates the current weights (Q = 1).
    ``step`` must be a black-box step; it is called once per unrolled step with
    ``Q * B`` rows, except for the first step, which is shared by all queries.
    ``reuse=False`` recomputes the first solver call and every layer for every
    query (for measuring what feature reuse saves; results are identical).
    """
    mask, std = model.mask, model.norm.state_std
    body = model.body
    with torch.no_grad():
        first = step(windows.initial, windows.params)  # independent of the weights
        cache = [model.features(first, windows.params)]
        for layer in body:
            cache.append(layer(cache[-1]))

    def run_body(start: int, h: Tensor, perturbed: dict[str, Tensor]) -> Tensor:
        for i in range(start, len(body)):
            prefix = f"body.{i}."
            local = {k[len(prefix) :]: v for k, v in perturbed.items() if k.startswith(prefix)}
            h = functional_call(body[i], local, (h,), strict=False) if local else body[i](h)
        return h

    def batched_loss(perturbed: dict[str, Tensor]) -> Tensor:
        q = next(iter(perturbed.values())).shape[0] if perturbed else 1
        with torch.no_grad():
            if reuse:
                k = _earliest_layer(list(perturbed))
                out = torch.vmap(lambda p: run_body(k, cache[k], p))(perturbed) if perturbed else cache[-1][None]
                start = first[None].expand(q, *first.shape)
            else:
                start = step(windows.initial.repeat(q, 1, 1, 1), windows.params.repeat(q, 1)).view(q, *first.shape)
                feats = torch.vmap(lambda s: model.features(s, windows.params))(start)
                out = (
                    torch.vmap(lambda p, h: run_body(0, h, p))(perturbed, feats) if perturbed else body(feats[0])[None]
                )
            state = start + model.output(out.flatten(0, 1)).view(q, *first.shape)
            states = [state]
            params = windows.params.repeat(q, 1)
            for _ in range(steps - 1):
                flat = step(state.flatten(0, 1), params).view_as(state)
                if perturbed:
                    corr = torch.vmap(lambda p, s: functional_call(model, p, (s, windows.params), strict=False))(
                        perturbed, flat
                    )
                else:
                    corr = model(flat[0], windows.params)[None]
                state = flat + corr
                states.append(state)
            predicted = torch.stack(states, dim=2)  # (Q, B, n, C, H, W)
            return trajectory_loss(predicted, windows.targets[None], std, mask)

    return batched_loss
