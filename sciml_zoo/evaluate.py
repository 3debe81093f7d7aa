"""Roll out each method on the test simulations and measure MAE per step.

Every method starts from the first test frame and runs ``steps`` steps of the
black-box solver (plus its correction) through the one rollout rule
(:func:`~sciml_zoo.rollout.corrected_step` + :func:`~sciml_zoo.rollout.trajectory`);
prediction i is compared with the downsampled reference frame i. Only the
test split is read; nothing here imports training.

Every solver call goes through the fault policy (:mod:`sciml_zoo.faults`,
:data:`EVALUATION_POLICY` by default): a failed query (an exception,
``SystemExit`` included, a timeout, NaN/Inf) is retried and counted. A test
simulation that still fails cannot be dropped without biasing the table, so
evaluation then stops with one line naming it and its parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciml_zoo.data.loading import Dataset, source_solver
from sciml_zoo.errors import ConfigError, QueryFailure, SolverError, check_positive_int
from sciml_zoo.faults import FaultCounts, FaultPolicy, make_query_step
from sciml_zoo.metrics import mae
from sciml_zoo.rollout import corrected_step, trajectory
from sciml_zoo.runs import load_model
from sciml_zoo.solver import Solver

__all__ = ["EVALUATION_POLICY", "rollout_test", "evaluate_methods", "default_steps"]

EVALUATION_POLICY = FaultPolicy(retries=5)
"""Evaluation's default fault policy: more retries than training's, as a test member cannot be dropped."""


def default_steps(data: Dataset, preferred: int = 100) -> int:
    """A valid evaluation horizon: ``min(preferred, test frames - 1)``."""
    return max(1, min(preferred, int(data.test.states.shape[1]) - 1))


def rollout_test(
    solver: Solver,
    model: torch.nn.Module | None,
    data: Dataset,
    *,
    steps: int,
    device: str = "cpu",
    policy: FaultPolicy | None = None,
    counts: FaultCounts | None = None,
    label: str = "SRC",
) -> torch.Tensor:
    """Test trajectories ``(S_test, steps, C, *spatial)`` of solver (+ correction), on the CPU.

    Solver calls run under ``policy`` (default :data:`EVALUATION_POLICY`),
    faults counted in ``counts``.

    Raises:
        SolverError: a test simulation's query failed after the retries (one
            line naming ``label``, the simulation, its parameters and the step).
    """
    test = data.test
    check_positive_int("evaluation steps", steps, hint="; e.g. --steps 50")
    if steps >= test.states.shape[1]:
        raise ConfigError(
            f"evaluation steps {steps} >= test frames {test.states.shape[1]}; use --steps {test.states.shape[1] - 1} "
            "or fewer"
        )
    dev = torch.device(device)
    guarded = make_query_step(solver, policy=policy or EVALUATION_POLICY, counts=counts)
    done = 0

    def step(state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        nonlocal done
        try:
            out = guarded(state.cpu(), params.cpu()).to(dev)
        except QueryFailure as failure:
            raise SolverError(_failed_member(data, failure, label=label, step=done + 1)) from None
        done += 1
        return out

    with torch.no_grad():
        rule = corrected_step(step, None if model is None else model.to(dev))
        return trajectory(rule, test.states[:, 0].to(dev), test.params.to(dev), steps).cpu()


def _failed_member(data: Dataset, failure: QueryFailure, *, label: str, step: int) -> str:
    members = list(failure.members) or list(range(len(data.test)))
    names = list(data.recipe.param_names) or [f"p{i}" for i in range(data.test.params.shape[1])]
    sim = members[0]
    values = ", ".join(f"{n}={float(v):g}" for n, v in zip(names, data.test.params[sim], strict=True))
    more = f" (and {len(members) - 1} more)" if len(members) > 1 else ""
    return (
        f"evaluating {label}: the solver failed for test simulation {sim} ({values}){more} at step {step} "
        f"after the retries (last error: {failure.last_error}); fix the solver for these parameters"
    )


def evaluate_methods(
    data: Dataset,
    runs: Mapping[str, str | Path | None],
    *,
    steps: int,
    device: str = "cpu",
    solver: Solver | None = None,
    policy: FaultPolicy | None = None,
    counts: FaultCounts | None = None,
) -> tuple[xr.DataArray, dict[str, torch.Tensor]]:
    """MAE of every method against the reference.

    Args:
        data: the dataset (its test split is used).
        runs: method label -> run directory, or ``None`` for SRC (no correction).
        steps: rollout length.
        device: where the networks run (solvers stay on the CPU).
        solver: the dataset's source solver, if the caller built it already.
        policy: fault policy of the solver calls (default :data:`EVALUATION_POLICY`).
        counts: where faults are counted (failures, retries, timeouts), if given.
    Returns:
        ``errors`` with dims ``(method, sim, step)`` (step 1..steps), every
        physical parameter of each test simulation as coordinates, and the
        predicted trajectories by method (for plots).
    """
    solver = solver or source_solver(data)
    reference = data.test.states[:, 1 : steps + 1]
    errs, trajectories = [], {}
    for label, run in runs.items():
        model = None if run is None else load_model(run, data).eval()
        pred = rollout_test(solver, model, data, steps=steps, device=device, policy=policy, counts=counts, label=label)
        trajectories[label] = pred
        errs.append(mae(pred, reference, data.mask).numpy())
    params = data.test.params.numpy()
    names = list(data.recipe.param_names) or [f"p{i}" for i in range(params.shape[1])]
    return (
        xr.DataArray(
            np.stack(errs) if errs else np.zeros((0, len(params), steps)),  # no runs: an empty method axis
            dims=("method", "sim", "step"),
            coords={
                "method": np.asarray(list(runs), dtype=object),  # str labels even when empty
                "step": np.arange(1, steps + 1),
                "sim_param": ("sim", params[:, 0] if params.shape[1] else np.full(len(params), np.nan)),
                **{f"param_{n}": ("sim", params[:, i]) for i, n in enumerate(names)},
            },
            name="mae",
        ),
        trajectories,
    )
