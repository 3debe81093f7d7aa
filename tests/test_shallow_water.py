"""The fifth untuned black-box scene: 1D shallow water through NumPy finite volumes.

Protocol (``check_adapter``), the physics it claims (exact conservation, a lake at
rest stays at rest, waves steepen) and a coarse error that is real and grows.
"""

from __future__ import annotations

import pytest
import torch

from sciml_zoo.estimators import DEFAULT_ESTIMATOR
from sciml_zoo.experiment import load_experiment
from sciml_zoo.registry import make_solver
from sciml_zoo.testing import check_adapter
from sciml_zoo_solvers.shallow_water import ShallowWater

G = torch.tensor([[0.8], [1.2]])


@pytest.mark.parametrize("order", [1, 2])
def test_passes_check_adapter_through_the_registry(order: int) -> None:
    report = check_adapter(make_solver("shallow-water", resolution=(64,), order=order), params=G)
    assert report.ok and "capabilities: differentiable=False is honest" in report.passed, str(report)


@pytest.mark.parametrize("order", [1, 2])
def test_mass_and_momentum_are_conserved_and_a_lake_at_rest_stays_at_rest(order: int) -> None:
    solver = ShallowWater(resolution=(64,), order=order)
    state = solver.initial_state(G, seed=3).double()
    out = state
    for _ in range(10):
        out = solver.step(out, G)
    assert torch.allclose(out.sum(-1), state.sum(-1), atol=1e-11)
    assert not torch.allclose(out, state, atol=1e-2)  # it moved
    rest = torch.stack([torch.full((2, 64), 1.3), torch.zeros(2, 64)], dim=1).double()
    assert torch.equal(solver.step(rest, G), rest)


def test_a_non_positive_depth_gives_nan_as_a_real_code_would() -> None:
    solver = ShallowWater(resolution=(16,))
    state = solver.initial_state(G, seed=0)
    state[0, 0, 3] = -0.1
    out = solver.step(state, G)
    assert torch.isnan(out[0]).any() and torch.isfinite(out[1]).all()  # batch members independent


def test_waves_steepen_and_the_coarse_error_is_real_and_grows() -> None:
    fine = ShallowWater(resolution=(256,), substeps=32, order=2)
    coarse = ShallowWater(resolution=(64,), substeps=4, order=1)
    state = fine.initial_state(G, seed=0).double()
    smooth_jump = float((state[:, 0] - state[:, 0].roll(1, -1)).abs().max())
    for _ in range(20):
        state = fine.step(state, G)
    assert float((state[:, 0] - state[:, 0].roll(1, -1)).abs().max()) > 3 * smooth_jump  # bores
    ref, src, errors = state, fine.restrict(state, (64,)), []
    for _ in range(30):
        ref, src = fine.step(ref, G), coarse.step(src, G)
        errors.append(float((src - fine.restrict(ref, (64,))).abs().mean()))
    assert errors[0] > 1e-3 and errors[-1] > 3 * errors[0], errors  # measured: 0.0046 -> 0.03


def test_the_preset_uses_the_default_estimator_on_held_out_gravity() -> None:
    exp = load_experiment("shallow_water")
    assert exp.recipe.name == "shallow_water" and exp.eval_steps < exp.recipe.num_frames
    assert exp.methods["zo-sol"].estimator.name == DEFAULT_ESTIMATOR
    assert set(map(tuple, exp.recipe.train_params)).isdisjoint(map(tuple, exp.recipe.test_params))
