"""check_adapter: every shipped adapter passes; broken adapters fail readably."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from sciml_zoo.errors import SolverError
from sciml_zoo.registry import make_solver, register
from sciml_zoo.testing import check_adapter
from sciml_zoo_solvers.c_build import build_example_solver, make_burgers_c_solver
from sciml_zoo_solvers.pypde_cahn_hilliard import make_cahn_hilliard_solver
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion, make_toy_solver

K = torch.tensor([[0.01], [0.02]])


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory):
    return build_example_solver(tmp_path_factory.mktemp("bin")).parent


# ---------------------------------------------------------------------------- shipped adapters
def test_toy_diffusion_passes() -> None:
    report = check_adapter(make_toy_solver(), params=K)
    assert report.ok and "capabilities: differentiable=True is honest" in report.passed


@pytest.mark.parametrize("resolution", [(12,), (8, 6), (6, 4, 8)])
def test_toy_diffusion_passes_in_1d_2d_and_3d(resolution: tuple[int, ...]) -> None:
    solver = make_toy_solver(resolution=resolution)
    assert solver.state_shape == (1, *reversed(resolution))
    report = check_adapter(solver, params=K)
    assert report.ok and any(p.startswith("restrict(state, resolution)") for p in report.passed), str(report)


@pytest.mark.parametrize(
    ("name", "resolution", "params"),
    [("fitzhugh-nagumo", (64,), [[0.06], [0.1]]), ("gray-scott", (32, 32), [[0.03], [0.05]])],
)
def test_numpy_black_box_scenes_pass_through_the_registry(name: str, resolution: tuple, params: list) -> None:
    report = check_adapter(make_solver(name, resolution=resolution), params=torch.tensor(params))
    assert report.ok and "capabilities: differentiable=False is honest" in report.passed


def test_ks_passes_through_the_registry() -> None:
    solver = make_solver("ks", resolution=(48,))
    assert solver.state_shape == (1, 48) and check_adapter(solver).ok


def test_phiflow_wake_passes_with_its_staggered_restriction() -> None:
    from sciml_zoo_solvers.phiflow_wake import make_wake_solver

    report = check_adapter(make_wake_solver(resolution=(16, 32)), params=torch.tensor([[200.0], [400.0]]))
    assert report.ok and any(p.startswith("restrict(state, resolution)") for p in report.passed)


def test_a_block_average_restriction_with_a_wrong_shape_is_reported() -> None:
    class BadRestrict(ToyDiffusion):
        def restrict(self, state: Tensor, resolution: tuple[int, ...]) -> Tensor:
            return state if tuple(resolution) == self.resolution else state[..., ::2]  # halves x only

    report = check_adapter(BadRestrict(resolution=(8, 8)), params=K, raise_on_failure=False)
    assert any("restrict(state, (4, 4)) gave (2, 1, 8, 4), want (2, 1, 4, 4)" in f for f in report.failures)


@pytest.mark.parametrize("mode", ["worker", "file"])
def test_burgers_c_passes_through_the_registry(build_dir, mode: str) -> None:
    register("burgers-c", make_burgers_c_solver)
    with make_solver("burgers-c", resolution=(16, 16), build_dir=build_dir, mode=mode) as solver:
        assert check_adapter(solver, params=K).ok


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=pytest.mark.slow)])
def test_pypde_cahn_hilliard_passes(backend: str) -> None:
    # numba compiles for 15-30 s; the numpy backend runs the same py-pde PDE uncompiled
    dt = 1.0 if backend == "numba" else 0.05  # numba: the grid of tests/test_pypde_adapter.py
    solver = make_cahn_hilliard_solver(resolution=(16, 16), length=16.0, dt=dt, backend=backend)
    assert check_adapter(solver, params=torch.tensor([[0.5], [1.5]])).ok


# ---------------------------------------------------------------------------- broken adapters
class WrongShape(ToyDiffusion):
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        return super().step(state, params)[..., :-1]


class BatchInconsistent(ToyDiffusion):
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        out = super().step(state, params)
        return out - out.mean(dim=0, keepdim=True)  # batch statistics couple the samples


class Nondeterministic(ToyDiffusion):
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        return super().step(state, params) + 1e-3 * torch.randn_like(state)


class LeaksGradient(ToyDiffusion):
    """Claims to be a black box, yet its step is a torch graph."""

    def __init__(self) -> None:
        super().__init__()
        self.capabilities = type(self.capabilities)(differentiable=False)


class CutsGraph(ToyDiffusion):
    """Claims to be differentiable, yet goes through NumPy."""

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        return torch.from_numpy(super().step(state, params).detach().numpy())


class InPlace(ToyDiffusion):
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        with torch.no_grad():
            return state.mul_(0.99)


class Diverges(ToyDiffusion):
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        out = super().step(state, params).clone()
        out[1] = float("nan")
        return out


@pytest.mark.parametrize(
    ("adapter", "words"),
    [
        (WrongShape, "returned a state of shape (2, 1, 16, 15), expected (2, 1, 16, 16)"),
        (BatchInconsistent, "a batch of two differs from two single calls"),
        (Nondeterministic, "two calls with the same input differ"),
        (LeaksGradient, "a gradient leaks through the 'black box'"),
        (CutsGraph, "differentiable=True but step output has no grad_fn"),
        (InPlace, "the input state was modified in place"),
        (Diverges, "NaN/Inf in batch member(s) [1]"),
    ],
)
def test_broken_adapters_fail_with_readable_messages(adapter: type, words: str) -> None:
    report = check_adapter(adapter(), params=K, raise_on_failure=False)
    assert not report.ok
    assert any(words in failure for failure in report.failures), str(report)
    assert "FAIL" in str(report) and words in str(report)


def test_raise_on_failure_lists_every_failure() -> None:
    class TwoBugs(Nondeterministic, BatchInconsistent):
        pass

    with pytest.raises(SolverError) as err:
        check_adapter(TwoBugs(), params=K)
    msg = str(err.value)
    assert "2 failed" in msg and "deterministic" in msg and "batch-consistent" in msg


def test_bad_attributes_are_reported() -> None:
    solver = make_toy_solver()
    solver._state_shape = (1,)  # no spatial axis (a (1, 16) state is a valid 1D layout now)
    report = check_adapter(solver, params=K, raise_on_failure=False)
    assert report.failures == [
        "protocol attributes: state_shape must be a (C, *spatial) tuple of positive ints with 1 to 3 "
        "spatial sizes, got (1,)"
    ]
