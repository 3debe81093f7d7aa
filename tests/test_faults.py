"""The fault policy: timeouts, retries of failed members only, NaN as failure, counts."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError, QueryFailure, SolverError
from sciml_zoo.executors.flaky import FlakySolver
from sciml_zoo.faults import FaultCounts, FaultPolicy, guarded, make_query_step
from sciml_zoo.solver import black_box
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

OPTIONS = {"resolution": (8, 6)}


def batch(n: int) -> tuple[Tensor, Tensor]:
    solver = ToyDiffusion(**OPTIONS)
    params = torch.linspace(0.01, 0.05, n)[:, None]
    return solver.initial_state(params, seed=0), params


def expected(states: Tensor, params: Tensor) -> Tensor:
    return black_box(ToyDiffusion(**OPTIONS))(states, params)


class Scripted(ToyDiffusion):
    """The toy solver, failing as scripted.

    ``fail(call, params)`` returns None, "raise", "hang" or a bool mask of rows to set to NaN.
    """

    def __init__(self, fail, *, batched: bool = True) -> None:
        super().__init__(**OPTIONS)
        self.fail, self.calls, self.sizes = fail, 0, []
        self.capabilities = type(self.capabilities)(differentiable=False, batched=batched)

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        self.calls += 1
        self.sizes.append(len(state))
        what = self.fail(self.calls, params)
        if what == "raise":
            raise RuntimeError(f"scripted failure on call {self.calls}")
        if what == "hang":
            time.sleep(5.0)
        out = super().step(state, params)
        if isinstance(what, Tensor):
            out[what] = float("nan")
        return out


def test_policy_and_counts_validate_and_round_trip():
    assert FaultPolicy(timeout_s=2).timeout_s == 2.0
    for bad in ({"timeout_s": 0}, {"timeout_s": float("inf")}, {"retries": -1}, {"max_consecutive_failures": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            FaultPolicy(**bad)
    counts = FaultCounts(failures=3, retries=2, timeouts=1, restarts=1, dropped_members=1, skipped_iterations=0)
    assert counts.as_dict() == {
        "failures": 3,
        "retries": 2,
        "timeouts": 1,
        "restarts": 1,
        "dropped_members": 1,
        "skipped_iterations": 0,
    }
    other = FaultCounts()
    other.load_state_dict({k: torch.tensor(v) for k, v in counts.state_dict().items()})
    assert other == counts


def test_clean_queries_are_bit_identical_and_in_one_call():
    solver, counts = Scripted(lambda call, p: None), FaultCounts()
    states, params = batch(5)
    out = make_query_step(solver, policy=FaultPolicy(timeout_s=5.0), counts=counts)(states, params)
    assert torch.equal(out, expected(states, params)) and solver.sizes == [5]
    assert counts == FaultCounts()


def test_timeout_on_a_hanging_python_adapter_then_retry_succeeds():
    solver, counts = Scripted(lambda call, p: "hang" if call == 1 else None), FaultCounts()
    states, params = batch(4)
    step = make_query_step(solver, policy=FaultPolicy(timeout_s=0.3, retries=1), counts=counts)
    t0 = time.perf_counter()
    out = step(states, params)
    assert time.perf_counter() - t0 < 3.0  # did not wait for the 5 s hang
    assert torch.equal(out, expected(states, params))
    assert solver.sizes == [4, 1, 1, 1, 1]  # the batch, then each failed member alone
    assert counts.as_dict() == {**FaultCounts().as_dict(), "failures": 4, "timeouts": 4, "retries": 4}


def test_hang_on_every_attempt_raises_query_failure_naming_all_members():
    counts = FaultCounts()
    step = guarded(Scripted(lambda c, p: "hang").step, FaultPolicy(timeout_s=0.2, retries=0), counts, name="toy")
    with pytest.raises(QueryFailure, match=r"toy: batch member\(s\) \[0, 1\] of 2.*QueryTimeout") as info:
        step(*batch(2))
    assert info.value.members == (0, 1) and "timeout_s" in info.value.last_error
    assert counts.timeouts == 2 and counts.failures == 2 and counts.retries == 0


def test_retries_then_success_keep_counts():
    solver, counts = Scripted(lambda call, p: "raise" if call <= 2 else None, batched=False), FaultCounts()
    states, params = batch(3)
    out = make_query_step(solver, policy=FaultPolicy(retries=2), counts=counts)(states, params)
    assert torch.equal(out, expected(states, params))
    # unbatched: one call per member; calls 1 and 2 (members 0 and 1) fail, then each succeeds alone
    assert solver.sizes == [1, 1, 1, 1, 1]
    assert (counts.failures, counts.retries, counts.timeouts) == (2, 2, 0)


def test_only_failed_members_are_dropped():
    """A member that always fails is named; the others are answered and retried alone."""

    def fail(call, p):
        return "raise" if bool((p[:, 0] > 0.035).any()) else None

    solver, counts = Scripted(fail), FaultCounts()
    states, params = batch(5)  # params 0.01 .. 0.05: members 3 and 4 fail
    with pytest.raises(QueryFailure, match="scripted failure") as info:
        make_query_step(solver, policy=FaultPolicy(retries=2), counts=counts)(states, params)
    assert info.value.members == (3, 4)
    assert solver.sizes == [5, 1, 1, 1, 1, 1, 1, 1]  # the batch, 5 singles (retry 1), 3 and 4 again (retry 2)
    assert (counts.failures, counts.retries) == (5 + 2 + 2, 5 + 2)


def test_nan_output_is_a_failure_per_member():
    nan_once = Scripted(lambda call, p: torch.tensor([False, True, False]) if call == 1 else None)
    counts = FaultCounts()
    states, params = batch(3)
    out = make_query_step(nan_once, policy=FaultPolicy(retries=1), counts=counts)(states, params)
    assert torch.equal(out, expected(states, params))
    assert nan_once.sizes == [3, 1] and (counts.failures, counts.retries) == (1, 1)
    always = Scripted(lambda call, p: p[:, 0] > 0.035)
    with pytest.raises(QueryFailure, match="NaN/Inf") as info:
        make_query_step(always, policy=FaultPolicy(retries=1))(*batch(5))
    assert info.value.members == (3, 4)


def test_adapter_bugs_are_not_retried():
    class WrongShape(ToyDiffusion):
        def step(self, state, params):
            return super().step(state, params)[:, :, :2]

    with pytest.raises(SolverError, match="returned .*shape") as info:
        make_query_step(WrongShape(**OPTIONS), policy=FaultPolicy(retries=3))(*batch(2))
    assert not isinstance(info.value, QueryFailure)


def test_make_query_step_checks_its_arguments():
    solver = ToyDiffusion(**OPTIONS)
    with pytest.raises(ConfigError, match="executor"):
        make_query_step(solver, executor="mpi")
    with pytest.raises(ConfigError, match="solver_spec"):
        make_query_step(solver, executor="process")
    with pytest.raises(ConfigError, match="scheduler"):
        make_query_step(solver, executor="local", scheduler="tcp://x:1")


def test_flaky_solver_is_deterministic_and_survivable():
    def run() -> tuple[Tensor, FaultCounts, dict]:
        flaky = FlakySolver(ToyDiffusion(**OPTIONS), raise_rate=0.3, nan_rate=0.2, seed=4)
        counts = FaultCounts()
        out = make_query_step(flaky, policy=FaultPolicy(retries=8), counts=counts)(*batch(8))
        return out, counts, dict(flaky.injected)

    (a, ca, ia), (b, cb, ib) = run(), run()
    assert torch.equal(a, b) and ca == cb and ia == ib
    assert torch.equal(a, expected(*batch(8)))
    assert ca.failures == ia["raise"] + ia["nan"] > 0 and ca.retries == ca.failures


# ---------------------------------------------------------------- process pool
@pytest.fixture(scope="module")
def process_step():
    counts = FaultCounts()
    step = make_query_step(
        ToyDiffusion(**OPTIONS),
        executor="process",
        workers=2,
        solver_spec=("toy-diffusion", OPTIONS),
        policy=FaultPolicy(timeout_s=30.0, retries=2),
        counts=counts,
    )
    yield step
    step.close()


def test_process_executor_is_bit_identical_and_restarts_killed_workers(process_step):
    states, params = batch(5)
    assert torch.equal(process_step(states, params), expected(states, params))
    pids = [p.pid for p in process_step.executor._pool._processes.values()]
    os.kill(pids[0], signal.SIGKILL)  # a worker dies between calls
    time.sleep(0.5)
    out = process_step(states, params)
    assert torch.equal(out, expected(states, params))
    assert process_step.counts.restarts >= 1 and process_step.counts.failures >= 1


def test_process_executor_times_out_inside_the_worker():
    counts = FaultCounts()
    from sciml_zoo.executors.flaky import make_flaky_solver

    options = {"inner": "toy-diffusion", "inner_options": OPTIONS, "hang_rate": 1.0, "hang_s": 30.0}
    step = make_query_step(
        ToyDiffusion(**OPTIONS),
        executor="process",
        workers=1,
        solver_spec=(make_flaky_solver, options),
        policy=FaultPolicy(timeout_s=0.5, retries=1),
        counts=counts,
    )
    try:
        t0 = time.perf_counter()
        with pytest.raises(QueryFailure) as info:
            step(*batch(2))
        assert time.perf_counter() - t0 < 60  # two worker start-ups plus two 1 s deadlines, not 30 s hangs
        assert info.value.members == (0, 1)
        assert counts.timeouts == 4 and counts.retries == 2
        assert counts.restarts == 2  # the hung worker was killed and replaced after each round
    finally:
        step.executor.shutdown(wait=False)
