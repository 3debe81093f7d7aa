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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from sciml_zoo.nn import CorrectionNet
from sciml_zoo.rollout import Correction, corrected_rollout, corrected_step, trajectory
from sciml_zoo.solver import StepFn

__all__ = ["Windows", "WindowSampler", "trajectory_loss", "network_layers", "make_batched_sol_loss"]


@dataclass(frozen=True)
class Windows:
    """A batch of training windows: ``initial`` (B, C, *spatial) reference states
    at t, ``targets`` (B, n, C, *spatial) reference states at t+1..t+n, ``params`` (B, P)."""

    def to(self, device: torch.device | str) -> Windows:
        """The windows on ``device``."""
        return Windows(self.initial.to(device), self.targets.to(device), self.params.to(device))

    def subset(self, keep: Tensor) -> Windows:
        """The windows at indices ``keep`` (a fault-dropped batch, say)."""
        return Windows(self.initial[keep], self.targets[keep], self.params[keep])

    initial: Tensor
    targets: Tensor
    params: Tensor


class WindowSampler:
    """Draws random windows ``(sim, t)`` from training trajectories.

    Args:
        states: ``(S, T, C, *spatial)`` downsampled reference trajectories.
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
    """Normalised MSE over valid entries, averaged over the batch and the steps.

    Args:
        predicted, targets: ``(..., B, n, C, *spatial)`` with 1 to 3 spatial dims.
        std: ``(C,)`` training std. mask: ``(C, *spatial)`` bool/float.
    Returns:
        The loss with the leading ``...`` dims (a scalar for ``(B, n, C, *spatial)``).
    """
    ndim = mask.dim() - 1
    err = ((predicted - targets) / std.view(-1, *([1] * ndim))) ** 2 * mask
    per = err.sum(dim=tuple(range(-(1 + ndim), 0))) / mask.sum()
    return per.mean(dim=(-2, -1)) if per.dim() >= 2 else per.mean()


def network_layers(model: CorrectionNet) -> list[tuple[str, nn.Module]]:
    """The ordered stages of the network body with their parameter-name prefixes.

    Uses ``model.layers()`` (the network's own description). Fallback for a
    network without it: the children of an ``nn.Sequential`` body.
    """
    layers = getattr(model, "layers", None)
    if callable(layers):
        return list(layers())
    body: nn.Sequential = model.body  # type: ignore[assignment]
    return [(f"body.{i}.", m) for i, m in enumerate(body)]


def make_batched_sol_loss(
    model: CorrectionNet, step: StepFn, windows: Windows, *, steps: int, reuse: bool = True
) -> Callable[[dict[str, Tensor]], Tensor]:
    """SOL loss at Q weight settings per call, without autograd.

    ``batched_loss(perturbed)`` takes a subset of parameter names mapped to
    stacked values ``(Q, *shape)`` (the rest stay at the model's values) and
    returns ``(Q,)`` losses. ``{}`` evaluates the current weights (Q = 1).
    ``step`` must be a black-box step; it is called once per unrolled step with
    ``Q * B`` rows (query-major: row ``r`` belongs to window ``r % B``), except
    for the first step, which is shared by all queries. The rollout is
    :func:`~sciml_zoo.rollout.trajectory` of
    :func:`~sciml_zoo.rollout.corrected_step`, the rule of every other loss.
    ``reuse=False`` recomputes the first solver call and every layer for every
    query (for measuring what feature reuse saves; results are identical).
    """
    mask: Tensor = model.mask  # type: ignore[assignment]
    std: Tensor = model.norm.state_std  # type: ignore[assignment]
    layers = network_layers(model)
    b, shape = windows.initial.shape[0], tuple(windows.initial.shape[1:])
    with torch.no_grad():
        first = step(windows.initial, windows.params)  # independent of the weights
        cache = [model.features(first, windows.params)]
        for _, layer in layers:
            cache.append(layer(cache[-1]))

    def earliest_layer(names: list[str]) -> int | None:
        """Index of the first layer holding a perturbed name (None: not all names are in layers)."""
        found = [next((i for i, (prefix, _) in enumerate(layers) if n.startswith(prefix)), None) for n in names]
        return None if None in found else min(found, default=len(layers))  # type: ignore[type-var]

    def run_layers(start: int, h: Tensor, perturbed: dict[str, Tensor]) -> Tensor:
        for prefix, layer in layers[start:]:
            local = {k[len(prefix) :]: v for k, v in perturbed.items() if k.startswith(prefix)}
            h = functional_call(layer, local, (h,), strict=False) if local else layer(h)
        return h

    def correction_at(perturbed: dict[str, Tensor], q: int) -> Correction:
        """The correction at each of the Q weight settings, on ``(Q * B, C, *spatial)`` states."""

        def correction(state: Tensor, params: Tensor) -> Tensor:
            states = state.view(q, b, *shape)
            if not perturbed:
                return model(states[0], windows.params)
            corr = torch.vmap(lambda p, s: functional_call(model, p, (s, windows.params), strict=False))(
                perturbed, states
            )
            return corr.flatten(0, 1)

        return correction

    def batched_loss(perturbed: dict[str, Tensor]) -> Tensor:
        q = next(iter(perturbed.values())).shape[0] if perturbed else 1
        params = windows.params.repeat(q, 1)
        correction = correction_at(perturbed, q)
        tile = (q, *([1] * len(shape)))
        with torch.no_grad():
            k = earliest_layer(list(perturbed))
            if not reuse:
                flat = trajectory(corrected_step(step, correction), windows.initial.repeat(*tile), params, steps)
            elif k is None:  # a perturbed name outside the layers: reuse the solver call, run the whole network
                flat = corrected_rollout(
                    step,
                    correction,
                    windows.initial.repeat(*tile),
                    params,
                    steps,
                    first_solver_output=first.repeat(*tile),
                )
            else:  # reuse the solver call and the activations before layer k
                out = torch.vmap(lambda p: run_layers(k, cache[k], p))(perturbed) if perturbed else cache[-1][None]
                state = (first[None] + model.output(out.flatten(0, 1)).view(q, b, *shape)).flatten(0, 1)
                rest = trajectory(corrected_step(step, correction), state, params, steps - 1)
                flat = torch.cat([state[:, None], rest], dim=1)
            predicted = flat.view(q, b, steps, *shape)
            return trajectory_loss(predicted, windows.targets[None], std, mask)

    return batched_loss
