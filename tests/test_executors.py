"""Executors: vectorized chunks with padding, a spawn process pool, black-box steps."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError, SolverError
from sciml_zoo.executors import (
    ProcessPoolSolverExecutor,
    VectorizedExecutor,
    make_parallel_step,
)
from sciml_zoo.solver import black_box
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion, make_toy_solver

torch.set_num_threads(1)

OPTIONS = {"resolution": (8, 6)}


class RecordingSolver(ToyDiffusion):
    """The toy solver, recording the batch size of every call."""

    def __init__(self) -> None:
        super().__init__(resolution=(8, 6))
        self.batch_sizes: list[int] = []

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        self.batch_sizes.append(len(state))
        return super().step(state, params)


class NaNSolver(ToyDiffusion):
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        out = super().step(state, params)
        out[-1, 0, 0, 0] = float("nan")
        return out


def batch(n: int) -> tuple[Tensor, Tensor]:
    solver = ToyDiffusion(**OPTIONS)
    params = torch.linspace(0.01, 0.05, n)[:, None]
    return solver.initial_state(params, seed=0), params


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolSolverExecutor("toy-diffusion", OPTIONS, max_workers=2) as executor:
        yield executor


def test_vectorized_single_call_matches_solver():
    solver = RecordingSolver()
    states, params = batch(7)
    out = VectorizedExecutor().evaluate(solver, states, params)
    assert solver.batch_sizes == [7]
    assert torch.equal(out, ToyDiffusion(**OPTIONS).step(states, params))


def test_vectorized_chunks_pad_last_chunk_and_strip_padding():
    solver = RecordingSolver()
    states, params = batch(7)
    out = VectorizedExecutor(chunk_size=3).evaluate(solver, states, params)
    assert solver.batch_sizes == [3, 3, 3]  # constant batch size: no jit retrace
    assert out.shape == states.shape
    assert torch.allclose(out, ToyDiffusion(**OPTIONS).step(states, params), atol=1e-6)
    # padding repeats the last real row, so it has valid physical parameters
    solver.batch_sizes.clear()
    VectorizedExecutor(chunk_size=4).evaluate(solver, states[:1], params[:1])
    assert solver.batch_sizes == [4]


def test_vectorized_submit_returns_a_future_and_carries_errors():
    states, params = batch(2)
    future = VectorizedExecutor().submit(ToyDiffusion(**OPTIONS), states, params)
    assert isinstance(future, Future) and future.done()
    assert future.result().shape == states.shape
    bad = VectorizedExecutor().submit(ToyDiffusion(**OPTIONS), states, params[:, :0])
    assert isinstance(bad.exception(), IndexError)
    with pytest.raises(ConfigError, match="chunk_size"):
        VectorizedExecutor(chunk_size=0)


def test_process_pool_matches_batched_call(pool):
    solver = ToyDiffusion(**OPTIONS)
    states, params = batch(5)
    expected = black_box(solver)(states, params)
    step = make_parallel_step(solver, pool)
    out = step(states, params)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert torch.equal(out, expected)  # bit-for-bit: the toy step is elementwise per row
    # the same queries, submitted without the step wrapper, come back in order
    reversed_out = pool.submit(solver, states.flip(0), params.flip(0)).result()
    assert torch.allclose(reversed_out, expected.flip(0), rtol=0, atol=1e-6)


def test_process_pool_uses_the_exact_states_sent(pool):
    """Each call is evaluated at the state it is given: nothing is cached in the workers."""
    solver = ToyDiffusion(**OPTIONS)
    states, params = batch(3)
    step = make_parallel_step(solver, pool)
    first = step(states, params)
    second = step(first, params)
    assert torch.allclose(second, solver.step(solver.step(states, params), params), atol=1e-6)
    assert not torch.allclose(second, first)


def test_process_pool_worker_error_becomes_solver_error(pool):
    states, params = batch(4)
    with pytest.raises(SolverError, match=r"toy-diffusion.step failed in a worker.*rows 0\.\.1"):
        pool.evaluate(ToyDiffusion(**OPTIONS), states, params[:, :0])


def test_process_pool_from_a_callable_factory():
    states, params = batch(3)
    solver = ToyDiffusion(**OPTIONS)
    with ProcessPoolSolverExecutor(make_toy_solver, OPTIONS, max_workers=1) as executor:
        out = executor.evaluate(solver, states, params)
    assert torch.allclose(out, solver.step(states, params), atol=1e-6)


def test_process_pool_rejects_unpicklable_factories():
    with pytest.raises(ConfigError, match="picklable"):
        ProcessPoolSolverExecutor(lambda **kw: ToyDiffusion(**kw), OPTIONS)
    with pytest.raises(ConfigError, match="max_workers"):
        ProcessPoolSolverExecutor("toy-diffusion", OPTIONS, max_workers=0)


def test_parallel_step_is_black_box_and_validates():
    states, params = batch(3)
    states.requires_grad_(True)
    out = make_parallel_step(ToyDiffusion(**OPTIONS), VectorizedExecutor())(states, params)
    assert not out.requires_grad and out.grad_fn is None
    nan_step = make_parallel_step(NaNSolver(**OPTIONS), VectorizedExecutor(chunk_size=2))
    with pytest.raises(SolverError, match=r"NaN/Inf in batch member\(s\) \[1\]"):
        nan_step(states, params)
