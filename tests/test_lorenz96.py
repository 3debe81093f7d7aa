"""Two-scale Lorenz-96 (solvers/lorenz96.py): adapter protocol, physics, restriction, preset."""

from __future__ import annotations

import numpy as np
import torch

from sciml_zoo.estimators import DEFAULT_ESTIMATOR
from sciml_zoo.experiment import load_experiment
from sciml_zoo.registry import make_solver
from sciml_zoo.testing import check_adapter
from sciml_zoo_solvers.lorenz96 import Lorenz96

NO_PARAMS = torch.zeros(4, 0)


def _spun_up(solver: Lorenz96, frames: int = 60, seed: int = 0) -> torch.Tensor:
    state = solver.initial_state(NO_PARAMS, seed=seed)
    for _ in range(frames):
        state = solver.step(state, NO_PARAMS)
    return state


def test_source_model_passes_check_adapter_through_the_registry() -> None:
    solver = make_solver("lorenz96", resolution=(8,))
    report = check_adapter(solver)
    assert solver.state_shape == (1, 8) and report.ok, str(report)


def test_two_scale_state_layout_and_restriction_keep_the_slow_variables() -> None:
    fine = Lorenz96(resolution=(8,), fast_per_slow=4, substeps=50)
    state = _spun_up(fine, frames=5)
    assert state.shape == (4, 5, 8)
    assert torch.equal(fine.restrict(state, (8,)), state[:, :1])
    assert torch.allclose(fine.restrict(state, (4,)), state[:, :1].reshape(4, 1, 4, 2).mean(-1))


def test_one_scale_tendency_matches_the_textbook_formula() -> None:
    solver = Lorenz96(resolution=(5,), forcing=8.0)
    x = np.arange(5.0)[None]
    dx = solver._tendency(x)
    want = [-x[0, k - 1] * (x[0, k - 2] - x[0, (k + 1) % 5]) - x[0, k] + 8.0 for k in range(5)]
    np.testing.assert_allclose(dx[0], want)


def test_chaotic_bounded_and_the_missing_fast_scale_is_a_real_growing_error() -> None:
    fine = Lorenz96(resolution=(8,), fast_per_slow=32, substeps=50)
    coarse = Lorenz96(resolution=(8,), substeps=10)
    state = _spun_up(fine)
    assert torch.isfinite(state).all() and state[:, 0].abs().max() < 40  # on the attractor, bounded

    # chaos: a 1e-6 perturbation of the slow variables grows by orders of magnitude
    a, b = state.clone(), state.clone()
    b[:, 0] += 1e-6
    for _ in range(40):
        a, b = fine.step(a, NO_PARAMS), fine.step(b, NO_PARAMS)
    assert (a[:, 0] - b[:, 0]).abs().mean() > 1e-3

    # the one-scale source model drifts from the restricted reference, more with every step
    ref, src, errors = state, fine.restrict(state, (8,)), []
    for _ in range(10):
        ref, src = fine.step(ref, NO_PARAMS), coarse.step(src, NO_PARAMS)
        errors.append(float((src - ref[:, :1]).abs().mean()))
    assert errors[0] > 0.02 and errors[-1] > 3 * errors[0], errors


def test_preset_is_the_ks_protocol_on_held_out_initial_conditions() -> None:
    exp = load_experiment("lorenz96")
    ks = load_experiment("ks")
    assert exp.recipe.name == "lorenz96" and exp.eval_steps < exp.recipe.num_frames
    for key in ("unroll", "iterations", "batch_size", "lr", "grad_clip"):
        assert getattr(exp.methods["zo-sol"], key) == getattr(ks.methods["zo-sol"], key), key
    assert exp.methods["zo-sol"].estimator.name == DEFAULT_ESTIMATOR  # the default, no estimator given
