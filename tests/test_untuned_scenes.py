"""The last two untuned black-box scenes: complex Ginzburg–Landau (1D) and Brusselator (2D).

Protocol (``check_adapter``), the physics each claims (chaos, the Hopf instability,
a steady state that is exact) and a coarse error that is real and grows, which is
what makes a correction worth learning.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciml_zoo.estimators import DEFAULT_ESTIMATOR
from sciml_zoo.experiment import load_experiment
from sciml_zoo.registry import make_solver
from sciml_zoo.testing import check_adapter
from sciml_zoo_solvers.brusselator import Brusselator
from sciml_zoo_solvers.ginzburg_landau import GinzburgLandau

C = torch.tensor([[-0.8], [-1.2]])  # Benjamin–Feir unstable with b = 2
B = torch.tensor([[2.2], [2.6]])


@pytest.mark.parametrize(
    ("name", "resolution", "params"), [("ginzburg-landau", (64,), C), ("brusselator", (16, 16), B)]
)
def test_pass_check_adapter_through_the_registry(name: str, resolution: tuple, params: torch.Tensor) -> None:
    report = check_adapter(make_solver(name, resolution=resolution), params=params)
    assert report.ok and "capabilities: differentiable=False is honest" in report.passed, str(report)


def _spun_up(solver, params: torch.Tensor, frames: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    state = solver.initial_state(params, seed=0).to(dtype)
    for _ in range(frames):
        state = solver.step(state, params)
    return state


def test_ginzburg_landau_is_turbulent_and_the_coarse_error_grows() -> None:
    fine = GinzburgLandau(resolution=(256,), substeps=100)
    coarse = GinzburgLandau(resolution=(64,), substeps=5)
    state = _spun_up(fine, C, 200, dtype=torch.float64)
    amplitude = state.pow(2).sum(1).sqrt()
    assert torch.isfinite(state).all() and 0.3 < float(amplitude.mean()) < 1.2  # saturated, bounded

    # chaos at c = -1.2 (1 + b c = -1.4, defect turbulence): a 1e-6 perturbation grows past 1e-3
    # within 50 time units (near threshold, c = -0.8, it stays small over that horizon)
    a, b = state[1:].clone(), state[1:].clone()
    b += 1e-6 * torch.randn(b.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for _ in range(100):
        a, b = fine.step(a, C[1:]), fine.step(b, C[1:])
    assert float((a - b).abs().mean()) > 1e-3

    ref, src, errors = state, fine.restrict(state, (64,)), []
    for _ in range(20):
        ref, src = fine.step(ref, C), coarse.step(src, C)
        errors.append(float((src - fine.restrict(ref, (64,))).abs().mean()))
    assert errors[0] > 1e-3 and errors[-1] > 3 * errors[0], errors


def test_ginzburg_landau_plane_wave_is_an_exact_solution() -> None:
    """A = sqrt(1 - k^2) exp(i (k x - w t)), w = c (1 - k^2) + b k^2 (continuum; FD replaces k^2)."""
    n, length, b, c, t = 64, 64.0, 2.0, -1.0, 0.5
    solver = GinzburgLandau(resolution=(n,), length=length, frame_time=t, substeps=200, dispersion=b)
    h, k = length / n, 2 * np.pi * 2 / length
    k2 = (2 - 2 * np.cos(k * h)) / h**2  # the 3-point Laplacian's eigenvalue
    x = np.arange(n) * h
    amp = np.sqrt(1 - k2)
    a0 = amp * np.exp(1j * k * x)
    state = torch.tensor(np.stack([a0.real, a0.imag])[None], dtype=torch.float64)
    out = solver.step(state, torch.tensor([[c]])).numpy()[0]
    want = a0 * np.exp(-1j * (c * amp**2 + b * k2) * t)
    np.testing.assert_allclose(out[0] + 1j * out[1], want, atol=1e-6)


def test_brusselator_steady_state_is_exact_and_hopf_unstable_above_threshold() -> None:
    solver = Brusselator(resolution=(16, 16))
    b = torch.tensor([[1.8], [2.6]])  # below and above the Hopf threshold b = 1 + a^2 = 2
    steady = torch.stack([torch.ones(2, 16, 16), b[:, :, None].expand(2, 16, 16)], dim=1).double()
    assert torch.allclose(solver.step(steady, b), steady, atol=1e-12)

    kick = steady.clone()
    kick[:, 0] += 0.01
    for _ in range(80):  # 40 time units
        kick = solver.step(kick, b)
    deviation = (kick - steady).abs().amax(dim=(1, 2, 3))
    assert deviation[0] < 1e-3 and deviation[1] > 0.1, deviation  # decays below, grows above


def test_brusselator_coarse_error_is_real_and_grows() -> None:
    fine = Brusselator(resolution=(64, 64), substeps=50)
    coarse = Brusselator(resolution=(32, 32), substeps=10)
    state = _spun_up(fine, B, 100)
    assert torch.isfinite(state).all()
    ref, src, errors = state, fine.restrict(state, (32, 32)), []
    for _ in range(20):
        ref, src = fine.step(ref, B), coarse.step(src, B)
        errors.append(float((src - fine.restrict(ref, (32, 32))).abs().mean()))
    assert errors[0] > 1e-3 and errors[-1] > 3 * errors[0], errors  # measured: 0.0055 -> 0.025


@pytest.mark.parametrize("name", ["ginzburg_landau", "brusselator"])
def test_presets_use_the_default_estimator_on_held_out_parameters(name: str) -> None:
    exp = load_experiment(name)
    assert exp.recipe.name == name and exp.eval_steps < exp.recipe.num_frames
    assert exp.methods["zo-sol"].estimator.name == DEFAULT_ESTIMATOR  # no estimator given: the default
    assert set(map(tuple, exp.recipe.train_params)).isdisjoint(map(tuple, exp.recipe.test_params))
