"""Physics and plumbing of the PhiFlow wake-flow adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciml_zoo import black_box, differentiable
from sciml_zoo.metrics import mae
from sciml_zoo_solvers.phiflow_wake import WakeFlow, make_wake_solver

pytest.importorskip("phi")


@pytest.fixture(scope="module")
def coarse() -> WakeFlow:
    return make_wake_solver(resolution=(32, 64))


def _warm(solver: WakeFlow, re: torch.Tensor, steps: int) -> torch.Tensor:
    state = solver.initial_state(re, seed=0)
    for _ in range(steps):
        state = solver.step(state, re)
    return state


def test_uniform_state_round_trips_exactly_through_the_staggered_grid(coarse):
    re = torch.tensor([[200.0], [1000.0]])
    state = _warm(coarse, re, 3)
    grid = coarse.to_native(state, re)
    assert grid.is_staggered and grid.resolution.sizes == (32, 64)
    assert torch.equal(coarse.from_native(grid), state)
    # padding entries are exactly what PhiFlow puts there, valid entries anything
    assert coarse.valid_mask.sum() == 2 * 32 * 64 + 32 + 64  # u: 33x64 faces, v: 32x65 faces


def test_black_box_and_differentiable_modes_agree_and_batch_members_are_independent(coarse):
    re = torch.tensor([[200.0], [1000.0]])
    state = _warm(coarse, re, 2)
    a = black_box(coarse)(state, re)
    b = differentiable(coarse)(state.clone().requires_grad_(True), re)
    assert torch.equal(a, b.detach())
    single = black_box(coarse)(state[1:], re[1:])
    torch.testing.assert_close(a[1:], single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[0], a[1])  # different Re, different result


def test_projection_makes_the_flow_divergence_free_away_from_the_obstacle(coarse):
    re = torch.tensor([[500.0]])
    s = _warm(coarse, re, 5)[0]
    u, v = s[0, :64, :], s[1, :, :32]  # valid faces
    div = (u[:, 1:] - u[:, :-1]) / (100 / 32) + (v[1:, :] - v[:-1, :]) / (200 / 64)
    far = torch.ones_like(div, dtype=torch.bool)
    far[8:25, 8:25] = False  # cells touching the cylinder (x 40-60, y 40-60 in cells of 3.1 x 3.1)
    assert div[far].abs().max() < 0.05
    assert div[far].abs().mean() < 5e-3


def test_gradient_through_the_solver_matches_float64_finite_differences():
    solver = make_wake_solver(resolution=(8, 16), tolerance=1e-10, max_iterations=5000)
    re = torch.tensor([[300.0]], dtype=torch.float64)
    state = solver.initial_state(re, seed=1).double()
    state = solver.step(solver.step(state, re), re)  # a non-trivial flow
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(state.shape, generator=gen, dtype=torch.float64) * solver.valid_mask
    direction = torch.randn(state.shape, generator=gen, dtype=torch.float64) * solver.valid_mask

    def f(x: torch.Tensor) -> torch.Tensor:
        return (solver.step(solver.step(x, re), re) * weights).sum()

    x = state.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x)
    eps = 1e-5
    with torch.no_grad():
        fd = (f(state + eps * direction) - f(state - eps * direction)) / (2 * eps)
    analytic = (grad * direction).sum()
    # measured 6.6e-7 for two steps (float32 arithmetic inside PhiFlow would give ~1e-3)
    assert abs(float(analytic - fd)) / abs(float(fd)) < 1e-5


def test_reference_run_sheds_vortices_and_source_run_has_real_error():
    """A transverse-velocity probe behind the cylinder oscillates with one dominant
    frequency at the reference resolution, and the source run drifts from it."""
    fine, coarse = make_wake_solver(resolution=(64, 128)), make_wake_solver(resolution=(32, 64))
    re = torch.tensor([[1562.5]])
    state = fine.initial_state(re, seed=0)
    probe = []
    for i in range(600):
        state = fine.step(state, re)
        probe.append(float(state[0, 0, 50, 32]))  # u at x=50, y~78: behind the cylinder
        if i == 399:
            start = fine.restrict(state, (32, 64))
            reference = [start]
        elif i > 399 and i < 460:
            reference.append(fine.restrict(state, (32, 64)))
    signal = np.asarray(probe[300:]) - np.mean(probe[300:])
    spectrum = np.abs(np.fft.rfft(signal))[1:]
    peak = int(spectrum.argmax()) + 1
    period = len(signal) / peak
    assert signal.std() > 0.05  # a real oscillation, not a steady wake
    assert 50 < period < 300  # a shedding period of O(100) time units
    assert spectrum[peak - 1] > 5 * np.median(spectrum)  # one dominant frequency
    src = start
    errors = []
    with torch.no_grad():
        for ref in reference[1:]:
            src = coarse.step(src, re)
            errors.append(float(mae(src, ref, coarse.valid_mask)))
    assert errors[-1] > 0.02 and errors[-1] > 3 * errors[0]  # SRC drifts clearly away


def test_fast_downsample_equals_phiflows_staggered_downsample2x():
    fine = make_wake_solver(resolution=(32, 64))
    re = torch.tensor([[400.0], [900.0]])
    state = torch.randn(2, *fine.state_shape)
    state = fine.from_native(fine.to_native(state, re))  # canonical padding
    for factor in (2, 4):
        torch.testing.assert_close(
            fine.restrict(state, (32 // factor, 64 // factor)),
            fine.downsample_phiflow(state, factor),
            atol=1e-6,
            rtol=1e-6,
        )
    assert fine.restrict(state, (8, 16)).shape == (2, 2, 17, 9)
