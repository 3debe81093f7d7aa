"""The Dask executor on a LocalCluster of 2 worker processes (one cluster for the module)."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from torch import Tensor

from sciml_zoo.config import ModelConfig, TrainConfig
from sciml_zoo.errors import ConfigError, QueryFailure, SolverError
from sciml_zoo.executors import DaskSolverExecutor, VectorizedExecutor, make_parallel_step
from sciml_zoo.executors.flaky import make_flaky_solver
from sciml_zoo.faults import FaultCounts, FaultPolicy, GuardedStep, make_query_step
from sciml_zoo.runs import RunConfig
from sciml_zoo.solver import black_box
from sciml_zoo.train.loop import train
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

OPTIONS = {"resolution": (8, 6)}


def batch(n: int) -> tuple[Tensor, Tensor]:
    solver = ToyDiffusion(**OPTIONS)
    params = torch.linspace(0.01, 0.05, n)[:, None]
    return solver.initial_state(params, seed=0), params


@pytest.fixture(scope="module")
def dask_toy():
    """2 worker processes building the toy solver from its registered name."""
    with DaskSolverExecutor("toy-diffusion", OPTIONS, n_workers=2, threads_per_worker=1) as executor:
        yield executor


def test_dask_matches_the_vectorized_executor_in_order(dask_toy):
    solver = ToyDiffusion(**OPTIONS)
    states, params = batch(7)
    expected = VectorizedExecutor().evaluate(solver, states, params)
    assert [len(r) for r in dask_toy.plan(solver, 7)] == [4, 3]  # a chunk per worker: batching is kept
    assert torch.equal(make_parallel_step(solver, dask_toy)(states, params), expected)
    flipped = dask_toy.submit(solver, states.flip(0), params.flip(0)).result()
    assert torch.equal(flipped, expected.flip(0))
    # each call is evaluated at the states it is given (nothing stale in the workers)
    assert torch.equal(dask_toy.evaluate(solver, expected, params), solver.step(expected, params))


def test_dask_worker_errors_name_the_rows(dask_toy):
    states, params = batch(4)
    with pytest.raises(SolverError, match=r"toy-diffusion.step failed in a Dask worker on rows 0\.\.1"):
        dask_toy.evaluate(ToyDiffusion(**OPTIONS), states, params[:, :0])


def test_dask_guarded_step_retries_only_failed_members(dask_toy):
    counts = FaultCounts()
    step = make_query_step(ToyDiffusion(**OPTIONS), executor=dask_toy, policy=FaultPolicy(retries=1), counts=counts)
    states, params = batch(4)
    bad = params.clone()
    bad[2] = float("nan")  # NaN viscosity -> NaN state for member 2 only
    with pytest.raises(QueryFailure) as info:
        step(states, bad)
    assert info.value.members == (2,) and "NaN" in info.value.last_error
    assert (counts.failures, counts.retries) == (2, 1)
    assert torch.equal(step(states, params), black_box(ToyDiffusion(**OPTIONS))(states, params))


def test_dask_timeout_restarts_the_hung_worker():
    options = {"inner": "toy-diffusion", "inner_options": OPTIONS, "hang_rate": 1.0, "hang_s": 60.0}
    counts = FaultCounts()
    with DaskSolverExecutor(make_flaky_solver, options, n_workers=1) as executor:
        step = GuardedStep(executor, ToyDiffusion(**OPTIONS), FaultPolicy(timeout_s=0.5, retries=0), counts)
        t0 = time.perf_counter()
        with pytest.raises(QueryFailure, match="QueryTimeout") as info:
            step(*batch(2))
        assert time.perf_counter() - t0 < 30
        assert info.value.members == (0, 1)
        assert (counts.timeouts, counts.restarts) == (2, 1)


def test_dask_needs_a_reachable_scheduler_address():
    with pytest.raises(ConfigError, match="scheduler"):
        DaskSolverExecutor("toy-diffusion", OPTIONS, scheduler="localhost")


def test_training_with_dask_gives_the_same_weights_as_in_process(tmp_path, toy_dataset, dask_toy, monkeypatch):
    """ZO-SOL (stencil) through the Dask workers: bit-identical weights to the in-process run, and every
    solver query of the run went out as a Dask task (training that ignored the executor would fail here)."""
    cfg = TrainConfig(
        method="zo-sol", estimator="stencil", unroll=3, iterations=4, batch_size=2, lr=3e-3, checkpoint_every=4
    )
    run = RunConfig(str(toy_dataset), ModelConfig(width=6, kernel_size=3), cfg)
    train(run, tmp_path / "local", progress=False)

    import sciml_zoo.faults as faults

    rows: list[int] = []

    class OnTheModuleCluster(DaskSolverExecutor):
        """The executor training builds, on the module's cluster (no second LocalCluster), counting rows."""

        def __init__(self, factory, options, **kw):
            super().__init__(factory, options, client=dask_toy.client)

        def submit_tasks(self, solver, blocks, **kw):
            rows.append(sum(len(s) for s, _ in blocks))
            return super().submit_tasks(solver, blocks, **kw)

    monkeypatch.setattr(faults, "DaskSolverExecutor", OnTheModuleCluster)
    dask_run = dataclasses.replace(run, train=dataclasses.replace(cfg, executor="dask", workers=2))
    summary = train(dask_run, tmp_path / "dask", progress=False)
    assert rows and sum(rows) == summary["train_solver_steps"] > 0
    local = torch.load(tmp_path / "local" / "checkpoint.pt", weights_only=False)["model"]
    remote = torch.load(tmp_path / "dask" / "checkpoint.pt", weights_only=False)["model"]
    assert local.keys() == remote.keys()
    for key in local:
        assert torch.equal(local[key], remote[key]), key
