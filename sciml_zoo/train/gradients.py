"""Where the gradient comes from: one object per training method.

Each gradient source is called with a batch of windows and the run's random
generator (the only source of randomness), writes ``.grad`` on the model's
parameters, counts every solver sample-step in the shared
:class:`~sciml_zoo.solver.StepCounter`, and returns the detached loss. Its
per-run state (an estimator's fits, ratios, subsets, counters) goes through
``state_dict()`` / ``load_state_dict()`` as tensors and JSON values, and
``stats()`` gives counters worth logging (e.g. ``auto``'s fallbacks).
Everything else in training is shared, so comparisons isolate the gradient.

- ``non``: one black-box solver step from reference states, backprop through
  the network only (Um et al. 2020's NON).
- ``fo-sol``: unroll n steps through the differentiable solver, backprop.
- ``zo-sol`` with a solver-space estimator: unroll through the black-box
  solver wrapped as an autograd function whose backward estimates ``J^T v``
  from queries; the network is differentiated exactly.
- ``zo-sol`` with a weight-space estimator (DeepZero): the loss at many
  weight settings, batched, combined into a gradient estimate.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch
from torch import Tensor

from sciml_zoo.config import TrainConfig
from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import Estimator, SolverSpaceEstimator, WeightSpaceEstimator, ZOStep, make_zo_step
from sciml_zoo.faults import FaultCounts, FaultPolicy, make_query_step
from sciml_zoo.nn import CorrectionNet
from sciml_zoo.rollout import corrected_rollout
from sciml_zoo.solver import Solver, StepCounter, StepFn, counting
from sciml_zoo.train.objective import Windows, make_batched_sol_loss, trajectory_loss

__all__ = [
    "BackpropGradient",
    "GradientSource",
    "SolverSpaceGradient",
    "WeightSpaceGradient",
    "make_gradient",
]


class GradientSource(Protocol):
    """What the training loop needs from a gradient source."""

    def __call__(self, windows: Windows, generator: torch.Generator) -> Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def inherit(self, previous: Any) -> None: ...


class BackpropGradient:
    """Unroll ``step`` with the correction and backpropagate the loss."""

    def __init__(self, model: CorrectionNet, step: StepFn, *, steps: int) -> None:
        self.model, self.step, self.steps = model, step, steps

    def __call__(self, windows: Windows, generator: torch.Generator) -> Tensor:
        predicted = corrected_rollout(self.step, self.model, windows.initial, windows.params, self.steps)
        std, mask = cast(Tensor, self.model.norm.state_std), cast(Tensor, self.model.mask)
        loss = trajectory_loss(predicted, windows.targets, std, mask)
        loss.backward()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}

    def inherit(self, previous: Any) -> None:
        """Start from what ``previous`` (an earlier curriculum stage's source) learned; nothing here."""


class SolverSpaceGradient(BackpropGradient):
    """Backprop through a :class:`~sciml_zoo.estimators.ZOStep`, its randomness from the run's generator."""

    def __init__(self, model: CorrectionNet, step: ZOStep, *, steps: int) -> None:
        super().__init__(model, step, steps=steps)
        self.zo = step

    def __call__(self, windows: Windows, generator: torch.Generator) -> Tensor:
        self.zo.generator = generator
        return super().__call__(windows, generator)

    def state_dict(self) -> dict[str, Any]:
        return {"estimator": self.zo.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("estimator") is not None:
            self.zo.load_state_dict(state["estimator"])

    def stats(self) -> dict[str, Any]:
        return self.zo.estimator.stats()

    def inherit(self, previous: Any) -> None:
        if isinstance(previous, SolverSpaceGradient):
            self.zo.estimator.inherit(previous.zo.estimator)


class WeightSpaceGradient:
    """DeepZero-style weight-space ZO estimate of the SOL gradient.

    The batched loss (:func:`~sciml_zoo.train.objective.make_batched_sol_loss`)
    evaluates many weight settings per solver call and reuses the features
    before the perturbed layer (``reuse``).
    """

    def __init__(
        self, model: CorrectionNet, step: StepFn, *, steps: int, estimator: WeightSpaceEstimator, reuse: bool = True
    ) -> None:
        self.model, self.step, self.steps, self.estimator, self.reuse = model, step, steps, estimator, reuse

    def __call__(self, windows: Windows, generator: torch.Generator) -> Tensor:
        batched_loss = make_batched_sol_loss(self.model, self.step, windows, steps=self.steps, reuse=self.reuse)
        return self.estimator.estimate(self.model, batched_loss, generator=generator).detach()

    def state_dict(self) -> dict[str, Any]:
        return {"estimator": self.estimator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("estimator") is not None:
            self.estimator.load_state_dict(state["estimator"])

    def stats(self) -> dict[str, Any]:
        return self.estimator.stats()

    def inherit(self, previous: Any) -> None:
        if isinstance(previous, WeightSpaceGradient):
            self.estimator.inherit(previous.estimator)


def make_gradient(
    cfg: TrainConfig,
    model: CorrectionNet,
    solver: Solver,
    counter: StepCounter,
    *,
    step_fn: StepFn | None = None,
    counts: FaultCounts | None = None,
) -> GradientSource:
    """Build the gradient source for ``cfg.method`` (and ``cfg.estimator``).

    Args:
        cfg: the run's training config (its estimator already built and validated).
        model: the correction network.
        solver: the source solver.
        counter: counts every solver sample-step.
        step_fn: the guarded solver step (:func:`sciml_zoo.faults.make_query_step`:
            black-box for NON and ZO-SOL, ``differentiable=True`` for FO-SOL),
            e.g. fanned out to an executor; default: a guarded step in this
            process under ``cfg``'s fault policy, faults counted in ``counts``.
        counts: where the default step counts faults (default: a fresh one).

    Every solver call goes through the fault policy (:mod:`sciml_zoo.faults`).
    The estimator is copied with :meth:`~sciml_zoo.estimators.Estimator.fresh`,
    so the config object never holds a run's state.
    """
    if step_fn is None:
        if cfg.executor != "local" or cfg.workers > 0:
            raise ConfigError(
                f"train.executor={cfg.executor!r}, workers={cfg.workers}: pass the step built by "
                "sciml_zoo.train.queries.make_query_step (it owns the workers) as step_fn"
            )
        policy = FaultPolicy(
            timeout_s=cfg.timeout_s, retries=cfg.retries, max_consecutive_failures=cfg.max_consecutive_failures
        )
        step_fn = make_query_step(solver, policy=policy, counts=counts, differentiable=cfg.method_spec.differentiable)
    method = cfg.method_spec
    if method.differentiable:
        if not getattr(step_fn, "differentiable", True):
            raise ConfigError("FO-SOL needs the differentiable guarded step (make_query_step(differentiable=True))")
        return BackpropGradient(model, counting(step_fn, counter), steps=cfg.steps)
    if not method.uses_estimator:
        return BackpropGradient(model, counting(step_fn, counter), steps=cfg.steps)
    if not isinstance(cfg.estimator, Estimator):  # TrainConfig builds it; guard direct construction
        raise ConfigError(f"train.estimator {cfg.estimator!r} was not built; construct TrainConfig normally")
    estimator = cfg.estimator.fresh()
    if isinstance(estimator, SolverSpaceEstimator):
        zo = make_zo_step(step_fn, estimator, counter=counter, mask=cast(Tensor, model.mask).bool())
        return SolverSpaceGradient(model, zo, steps=cfg.steps)
    if isinstance(estimator, WeightSpaceEstimator):
        return WeightSpaceGradient(model, counting(step_fn, counter), steps=cfg.steps, estimator=estimator)
    raise ConfigError(f"estimator {estimator.name!r} is neither solver- nor weight-space")
