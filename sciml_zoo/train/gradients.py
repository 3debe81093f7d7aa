"""Where the gradient comes from: one object per training method.

Each gradient source is called with a batch of windows and the run's random
generator, writes ``.grad`` on the model's parameters, counts every solver
sample-step in the shared :class:`~sciml_zoo.solver.StepCounter`, and returns
the loss. Everything else in training is shared, so comparisons between
methods isolate the gradient.

- ``non``: one black-box solver step from reference states, backprop through
  the network only (Um et al. 2020's NON).
- ``fo-sol``: unroll n steps through the differentiable solver, backprop.
- ``zo-sol`` with a solver-space estimator: unroll through the black-box
  solver wrapped as an autograd function whose backward estimates Jᵀv from
  queries; the network is differentiated exactly.
- ``zo-sol`` with a weight-space estimator (DeepZero): the loss at many
  weight settings, batched, combined into a gradient estimate.
"""

from __future__ import annotations

from typing import Any

import torch

from sciml_zoo.errors import ConfigError
from sciml_zoo.nn import CorrectionNet
from sciml_zoo.rollout import corrected_rollout
from sciml_zoo.solver import Solver, StepCounter, StepFn, black_box, counting, differentiable
from sciml_zoo.train.config import SOLVER_SPACE_ESTIMATORS, TrainConfig
from sciml_zoo.train.objective import Windows, make_batched_sol_loss, trajectory_loss

__all__ = ["make_gradient", "BackpropGradient", "WeightSpaceGradient"]

# CLI names of solver-space estimators -> names in sciml_zoo.estimators.solver_space
_SOLVER_SPACE_NAMES = {"state-rge": "rge"}


class BackpropGradient:
    """Unroll ``step`` with the correction and backpropagate the loss."""

    def __init__(self, model: CorrectionNet, step: StepFn, *, steps: int) -> None:
        self.model, self.step, self.steps = model, step, steps

    def __call__(self, windows: Windows, generator: torch.Generator) -> torch.Tensor:
        predicted = corrected_rollout(self.step, self.model, windows.initial, windows.params, self.steps)
        loss = trajectory_loss(predicted, windows.targets, self.model.norm.state_std, self.model.mask)
        loss.backward()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class WeightSpaceGradient:
    """DeepZero-style weight-space ZO estimate of the SOL gradient.

    Sparse CGE needs layer-wise sparsity ratios; unless given in the options
    (``ratios``), they come from ZO-GraSP (function queries only) on the first
    batch, at ``sparsity`` (default 0.9), and are kept in the checkpoint.
    """

    def __init__(
        self,
        model: CorrectionNet,
        step: StepFn,
        *,
        steps: int,
        name: str,
        options: dict[str, Any],
        reuse: bool = True,
    ) -> None:
        from sciml_zoo.estimators.weight_space import make_weight_space_estimator

        self.model, self.step, self.steps, self.name, self.reuse = model, step, steps, name, reuse
        self.options = dict(options)
        self.ratios: dict[str, float] | None = self.options.pop("ratios", None)
        self.sparsity = float(self.options.pop("sparsity", 0.9))
        self.grasp_directions = int(self.options.pop("grasp_directions", 192))
        self._make = make_weight_space_estimator
        self.estimator: Any = None if name == "sparse-cge" else make_weight_space_estimator(name, **self.options)
        self._pending_state: dict[str, Any] | None = None

    def __call__(self, windows: Windows, generator: torch.Generator) -> torch.Tensor:
        batched_loss = make_batched_sol_loss(self.model, self.step, windows, steps=self.steps, reuse=self.reuse)
        if self.estimator is None:
            if self.ratios is None:
                from sciml_zoo.estimators.grasp import zo_grasp_ratios

                self.ratios = zo_grasp_ratios(
                    self.model,
                    batched_loss,
                    target_sparsity=self.sparsity,
                    num_directions=self.grasp_directions,
                    mu=self.options.get("mu", 5e-3),
                    generator=generator,
                )
            self.estimator = self._make(self.name, ratios=self.ratios, **self.options)
            if self._pending_state is not None and hasattr(self.estimator, "load_state_dict"):
                self.estimator.load_state_dict(self._pending_state)
        return self.estimator.estimate(self.model, batched_loss, generator=generator).detach()

    def state_dict(self) -> dict[str, Any]:
        est = self.estimator.state_dict() if hasattr(self.estimator, "state_dict") else None
        return {"ratios": self.ratios, "estimator": est}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ratios = state.get("ratios") or self.ratios
        if state.get("estimator") is not None:
            if self.estimator is not None and hasattr(self.estimator, "load_state_dict"):
                self.estimator.load_state_dict(state["estimator"])
            else:
                self._pending_state = state["estimator"]


def black_box_step(
    solver: Solver, *, workers: int = 0, solver_spec: tuple[str, dict[str, Any]] | None = None
) -> StepFn:
    """The solver's black-box step, fanned out to a process pool if it helps.

    A batched adapter already answers a whole batch of queries in one call. A
    non-batched one (a closed binary, a numba kernel) gets ``workers``
    processes, each building its own solver from ``solver_spec`` (registered
    name and options) once.
    """
    if workers <= 0 or solver.capabilities.batched:
        return black_box(solver)
    if solver_spec is None:
        raise ConfigError("train.workers > 0 needs the solver's registered name and options")
    from sciml_zoo.executors import ProcessPoolSolverExecutor, make_parallel_step

    executor = ProcessPoolSolverExecutor(solver_spec[0], solver_spec[1], max_workers=workers)
    return make_parallel_step(solver, executor)


def make_gradient(
    cfg: TrainConfig,
    model: CorrectionNet,
    solver: Solver,
    counter: StepCounter,
    *,
    solver_spec: tuple[str, dict[str, Any]] | None = None,
) -> Any:
    """Build the gradient source for ``cfg.method`` (and ``cfg.estimator``).

    ``solver_spec`` (registered name, options) lets worker processes rebuild
    the solver when ``cfg.workers > 0``.
    """
    if cfg.method == "fo-sol":
        return BackpropGradient(model, counting(differentiable(solver), counter), steps=cfg.steps)
    raw = black_box_step(solver, workers=cfg.workers, solver_spec=solver_spec)
    bb = counting(raw, counter)
    if cfg.method == "non":
        return BackpropGradient(model, bb, steps=1)
    assert cfg.estimator is not None  # checked by TrainConfig
    if cfg.estimator in SOLVER_SPACE_ESTIMATORS:
        from sciml_zoo.estimators.solver_space import make_zo_step

        name = _SOLVER_SPACE_NAMES.get(cfg.estimator, cfg.estimator)
        step = make_zo_step(raw, estimator=name, counter=counter, mask=model.mask.bool(), **cfg.estimator_options)
        return BackpropGradient(model, step, steps=cfg.steps)
    return WeightSpaceGradient(model, bb, steps=cfg.steps, name=cfg.estimator, options=cfg.estimator_options)
