"""Roll out each method on the test simulations and measure MAE per step.

Every method starts from the first test frame and runs ``steps`` steps of the
black-box solver (plus its correction); prediction i is compared with the
downsampled reference frame i.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sciml_zoo.errors import ConfigError
from sciml_zoo.metrics import mae
from sciml_zoo.rollout import corrected_rollout
from sciml_zoo.solver import Solver, black_box
from sciml_zoo.train.loop import TrainingData, load_model, source_solver

__all__ = ["rollout_test", "evaluate_methods"]


def rollout_test(solver: Solver, model: torch.nn.Module | None, data: TrainingData, *, steps: int) -> torch.Tensor:
    """Test trajectories ``(S_test, steps, C, H, W)`` of solver (+ correction)."""
    test = data.states[data.test_idx]
    if steps >= test.shape[1]:
        raise ConfigError(f"evaluation steps {steps} >= test frames {test.shape[1]}; use fewer --steps")
    with torch.no_grad():
        return corrected_rollout(black_box(solver), model, test[:, 0], data.params[data.test_idx], steps)


def evaluate_methods(
    data: TrainingData, runs: Mapping[str, str | Path | None], *, steps: int
) -> tuple[xr.DataArray, dict[str, torch.Tensor]]:
    """MAE of every method against the reference.

    Args:
        data: the dataset.
        runs: method label -> run directory, or ``None`` for SRC (no correction).
        steps: rollout length.
    Returns:
        ``errors`` with dims ``(method, sim, step)`` (step 1..steps) and the
        predicted trajectories by method (for plots).
    """
    solver = source_solver(data)
    reference = data.states[data.test_idx][:, 1 : steps + 1]
    errs, trajectories = [], {}
    for label, run in runs.items():
        model = None if run is None else load_model(run, data).eval()
        pred = rollout_test(solver, model, data, steps=steps)
        trajectories[label] = pred
        errs.append(mae(pred, reference, data.mask).numpy())
    params = data.params[data.test_idx].numpy()
    return (
        xr.DataArray(
            np.stack(errs),
            dims=("method", "sim", "step"),
            coords={
                "method": list(runs),
                "step": np.arange(1, steps + 1),
                "sim_param": ("sim", params[:, 0] if params.shape[1] else np.full(len(params), np.nan)),
            },
            name="mae",
        ),
        trajectories,
    )
