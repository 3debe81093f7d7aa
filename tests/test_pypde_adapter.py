"""The py-pde Cahn–Hilliard adapter: layout, physics, parameters, fine vs coarse.

Fast tests run py-pde's numpy backend (same PDE class and Euler solver, no
compilation) on a tiny 16×16 problem with short steps. Compiling the numba
stepper takes 15–30 s per grid on a shared machine, so every numba test (the
default backend: physics, agreement with numpy, fine vs coarse) is ``slow``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sciml_zoo_solvers.pypde_cahn_hilliard import make_cahn_hilliard_solver

SMALL = {"resolution": (16, 16), "length": 16.0, "dt": 0.05, "backend": "numpy"}
GAMMA = torch.tensor([[0.5], [1.0]])


@pytest.fixture(scope="module")
def solver():
    return make_cahn_hilliard_solver(**SMALL)


@pytest.fixture(scope="module")
def numba_solver():
    return make_cahn_hilliard_solver(**{**SMALL, "dt": 1.0, "backend": "numba"})


def test_importing_solvers_does_not_import_pypde() -> None:
    code = (
        "import sys, sciml_zoo_solvers, sciml_zoo_solvers.pypde_cahn_hilliard, sciml_zoo_solvers.external, "
        "sciml_zoo_solvers.c_build;"
        "assert 'pde' not in sys.modules and 'numba' not in sys.modules, 'eager import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_initial_state_is_reproducible_noise_around_the_mean(solver) -> None:
    a = solver.initial_state(GAMMA, seed=3)
    assert a.shape == (2, 1, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, solver.initial_state(GAMMA, seed=3))
    assert not torch.equal(a, solver.initial_state(GAMMA, seed=4))
    torch.testing.assert_close(a.mean(dim=(2, 3)), torch.zeros(2, 1), atol=1e-6, rtol=0)
    assert 0.05 < float(a.std()) < 0.2


def test_steps_conserve_mass(solver) -> None:
    c0 = solver.initial_state(GAMMA, seed=0) + 0.1
    c = c0
    for _ in range(5):
        c = solver.step(c, GAMMA)
    torch.testing.assert_close(c.mean(dim=(2, 3)), c0.mean(dim=(2, 3)), atol=1e-6, rtol=0)
    assert float((c - c0).abs().max()) > 1e-3


@pytest.mark.slow
def test_phase_separation_conserves_mass(numba_solver) -> None:
    c0 = numba_solver.initial_state(GAMMA, seed=0) + 0.1  # off-critical mixture, mean 0.1
    c = c0
    for _ in range(25):
        c = numba_solver.step(c, GAMMA)
    # Cahn-Hilliard conserves the mean composition ...
    torch.testing.assert_close(c.mean(dim=(2, 3)), c0.mean(dim=(2, 3)), atol=1e-5, rtol=0)
    # ... while the mixture separates into phases near c = +-1
    assert float(c.std()) > 5 * float(c0.std())
    assert 0.85 < float(c.abs().max()) < 1.2


def test_layout_is_y_then_x(solver) -> None:
    x = torch.linspace(0, 2 * torch.pi, 17)[:-1]
    c = (0.3 * torch.sin(x)).expand(16, 16).reshape(1, 1, 16, 16)  # varies along x only
    out = solver.step(c, GAMMA[:1])
    assert torch.allclose(out, out[:, :, :1, :].expand_as(out), atol=1e-6)  # still x only
    assert float((out - c).abs().max()) > 1e-4


@pytest.mark.slow
def test_numba_and_numpy_backends_agree(numba_solver) -> None:
    c = numba_solver.initial_state(GAMMA, seed=1)
    ref = make_cahn_hilliard_solver(**{**SMALL, "dt": 1.0}).step(c, GAMMA)
    torch.testing.assert_close(numba_solver.step(c, GAMMA), ref, rtol=1e-5, atol=1e-5)


def test_bad_parameters_name_the_fix(solver) -> None:
    c = solver.initial_state(GAMMA, seed=0)
    with pytest.raises(ValueError, match="max_interface_width"):
        solver.step(c, torch.tensor([[0.5], [3.0]]))
    with pytest.raises(ValueError, match=r"params must have shape \(2, 1\)"):
        solver.step(c, torch.ones(2, 2))
    with pytest.raises(ValueError, match="square"):
        make_cahn_hilliard_solver(resolution=(16, 32))


def test_downsample_block_averages(solver) -> None:
    c = solver.initial_state(GAMMA, seed=0)
    small = solver.restrict(c, (8, 8))
    assert small.shape == (2, 1, 8, 8)
    torch.testing.assert_close(small[0, 0, 0, 0], c[0, 0, :2, :2].mean())
    with pytest.raises(ValueError, match="divide"):
        solver.restrict(c, (5, 5))


@pytest.mark.slow
def test_coarse_run_has_a_bounded_correctable_error() -> None:
    """64×64 reference vs 32×32 source on the default 32×32 square, dt = 1."""
    fine = make_cahn_hilliard_solver(resolution=(64, 64))
    coarse = make_cahn_hilliard_solver(resolution=(32, 32))
    gamma = torch.tensor([[0.5], [1.0], [2.0]])
    f = fine.initial_state(gamma, seed=0)
    c = fine.restrict(f, (32, 32))
    for _ in range(20):
        f, c = fine.step(f, gamma), coarse.step(c, gamma)
    ref = fine.restrict(f, (32, 32))
    rel = (c - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
    assert bool((rel > 0.05).all()), rel  # a real error to correct ...
    assert bool((rel < 1.0).all()), rel  # ... that stays bounded
    assert float(c.abs().max()) < 1.2  # the coarse run is stable
