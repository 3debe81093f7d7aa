"""Physics of the 2D Kuramoto–Sivashinsky adapter (solvers/ks2d.py) and its CI preset."""

from __future__ import annotations

import math

import pytest
import torch

from sciml_zoo.testing import check_adapter
from sciml_zoo_solvers.ks2d import make_ks2d_solver

L = 10 * math.pi
NONE = torch.zeros(1, 0)


def _plane_wave(n: int, p: int, q: int, amplitude: float) -> torch.Tensor:
    grid = torch.arange(n, dtype=torch.float64) / n
    return (amplitude * torch.cos(2 * math.pi * (p * grid[:, None] + q * grid[None, :])))[None, None]


def test_linear_growth_and_decay_follow_the_dispersion_relation() -> None:
    """A tiny plane wave grows at rate |k|^2 - |k|^4: unstable for |k| < 1, damped above."""
    solver = make_ks2d_solver(resolution=(24, 24), length=L, dt=0.1, substeps=1)
    for p, q in [(2, 1), (4, 3)]:
        k2 = (2 * math.pi / L) ** 2 * (p * p + q * q)
        u0 = _plane_wave(24, p, q, 1e-6)
        u1 = solver.step(u0, NONE)
        assert float((u1 * u0).sum() / (u0 * u0).sum()) == pytest.approx(math.exp(0.1 * (k2 - k2 * k2)), rel=1e-6)


def test_mean_is_conserved_and_steps_converge() -> None:
    fine = make_ks2d_solver(resolution=(32, 32), length=L, dt=0.5, substeps=20)
    coarse = make_ks2d_solver(resolution=(32, 32), length=L, dt=0.5, substeps=5)
    u = fine.initial_state(torch.zeros(2, 0), seed=1).double()
    assert float(u.mean()) == pytest.approx(0.0, abs=1e-6)  # zero-mean plane waves, in float32
    a, b = u, u
    for _ in range(20):
        a, b = fine.step(a, torch.zeros(2, 0)), coarse.step(b, torch.zeros(2, 0))
    assert float((a.mean() - u.mean()).abs()) < 1e-12  # no drift of the mean (the gauge)
    assert float((a - b).abs().max() / a.abs().max()) < 1e-3  # ETDRK4 converges in h


def test_without_the_gauge_the_mean_drifts_at_minus_half_the_mean_squared_gradient() -> None:
    """d<u>/dt = -½ <|∇u|²> (the Laplacians average to zero); a shift of u changes nothing else."""
    solver = make_ks2d_solver(resolution=(32, 32), length=L, dt=1e-3, substeps=1, mean_free=False)
    u = solver.initial_state(torch.zeros(2, 0), seed=1).double()
    k = torch.fft.fftfreq(32, d=1.0 / 32, dtype=torch.float64) * 2 * math.pi / L
    spec = torch.fft.fft2(u)
    ux, uy = torch.fft.ifft2(1j * k[:, None] * spec).real, torch.fft.ifft2(1j * k[None, :] * spec).real
    rate = -0.5 * (ux**2 + uy**2).mean((1, 2, 3))
    drift = (solver.step(u, torch.zeros(2, 0)) - u).mean((1, 2, 3)) / 1e-3
    assert torch.allclose(drift, rate, rtol=1e-3)
    shifted = solver.step(u + 7.0, torch.zeros(2, 0)) - 7.0
    assert torch.allclose(shifted, solver.step(u, torch.zeros(2, 0)), atol=1e-9)  # the mean is a gauge


def test_restriction_keeps_band_limited_fields_exactly() -> None:
    solver = make_ks2d_solver(resolution=(72, 72), length=L)
    fine, coarse = _plane_wave(72, 3, -5, 1.0).float(), _plane_wave(24, 3, -5, 1.0).float()
    assert torch.allclose(solver.restrict(fine, (24, 24)), coarse, atol=1e-5)
    assert float(solver.restrict(_plane_wave(72, 13, 0, 1.0).float(), (24, 24)).abs().max()) < 1e-5  # above band


def test_autograd_matches_float64_central_differences() -> None:
    solver = make_ks2d_solver(resolution=(16, 16), length=6 * math.pi, dt=0.5)
    x = solver.initial_state(torch.zeros(1, 0), seed=2).double().requires_grad_(True)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (grad,) = torch.autograd.grad(solver.step(x, NONE), x, grad_outputs=v)
    u = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        fd = ((solver.step(x + h * u, NONE) - solver.step(x - h * u, NONE)) / (2 * h) * v).sum()
    assert float((grad * u).sum()) == pytest.approx(float(fd), rel=1e-6)


def test_the_adapter_passes_check_adapter() -> None:
    check_adapter(make_ks2d_solver(resolution=(16, 16), length=6 * math.pi))  # raises on a failed check


def test_the_coarse_run_drifts_from_the_reference_on_the_attractor() -> None:
    """SRC's error is not trivial: the ks2d_24 pair after burn-in separates within 20 frames."""
    ref = make_ks2d_solver(resolution=(72, 72), length=L, substeps=10)
    src = make_ks2d_solver(resolution=(24, 24), length=L)
    u = ref.initial_state(torch.zeros(2, 0), seed=0)
    for _ in range(120):
        u = ref.step(u, torch.zeros(2, 0))
    assert float(u.std()) > 1.0  # on the attractor, not decayed
    coarse = ref.restrict(u, (24, 24))
    errors = []
    for _ in range(20):
        u, coarse = ref.step(u, torch.zeros(2, 0)), src.step(coarse, torch.zeros(2, 0))
        errors.append(float((ref.restrict(u, (24, 24)) - coarse).abs().mean()))
    assert errors[0] < 0.1 * errors[-1]
    assert errors[-1] > 0.05 * float(u.std())
