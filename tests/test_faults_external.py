"""The fault policy with a real external program (the C Burgers solver) killed from outside."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from sciml_zoo.executors import QueryTimeout
from sciml_zoo.faults import FaultCounts, FaultPolicy, make_query_step
from sciml_zoo_solvers.c_build import build_example_solver, make_burgers_c_solver

RES = (16, 16)


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example_solver(tmp_path_factory.mktemp("bin"))


def burgers(exe: Path, **options: object):
    return make_burgers_c_solver(resolution=RES, build_dir=exe.parent, **options)


def inputs(solver, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    params = torch.linspace(0.01, 0.05, n)[:, None]
    return solver.initial_state(params, seed=0).double(), params.double()


def _kill(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def test_killed_between_requests_is_restarted_and_counted(exe: Path) -> None:
    with burgers(exe) as solver:
        counts = FaultCounts()
        step = make_query_step(solver, policy=FaultPolicy(timeout_s=20.0, retries=2), counts=counts)
        states, params = inputs(solver)
        first = step(states, params)
        assert _kill(solver.pid)
        time.sleep(0.2)
        again = step(states, params)
        assert torch.equal(first, again)
        assert counts.restarts == 1 and counts.failures == 0
        assert "killed by SIGKILL" in solver.restart_reasons[-1]


def test_killed_during_a_request_is_retried_restarted_and_counted(exe: Path) -> None:
    # the program answers one request, then hangs in the second; we kill it there from outside
    with burgers(exe, fault="hang-after=1") as solver:
        reference = burgers(exe)
        counts = FaultCounts()
        step = make_query_step(solver, policy=FaultPolicy(timeout_s=20.0, retries=2), counts=counts)
        states, params = inputs(solver, 2)
        timer = threading.Timer(1.0, lambda: _kill(solver.pid))
        timer.start()
        out = step(states, params)
        timer.join()
        assert torch.equal(out, reference.step(states, params))
        assert (counts.failures, counts.retries, counts.restarts, counts.timeouts) == (1, 1, 1, 0)
        assert "stopped before replying" in solver.restart_reasons[-1]
        reference.close()


def test_hung_program_times_out_by_its_own_deadline_and_is_restarted(exe: Path) -> None:
    with burgers(exe, fault="hang-after=1", timeout_s=60.0) as solver:
        counts = FaultCounts()
        step = make_query_step(solver, policy=FaultPolicy(timeout_s=0.5, retries=1), counts=counts)
        assert solver.timeout_s == 0.5  # the policy's deadline is the adapter's own: it kills, not abandons
        states, params = inputs(solver, 2)
        t0 = time.perf_counter()
        step(states, params)
        assert time.perf_counter() - t0 < 10
        assert (counts.failures, counts.timeouts, counts.restarts) == (1, 1, 1)
        with pytest.raises(QueryTimeout):
            solver.step(states[:1], params[:1])  # the fresh program answered once and hangs again


def test_training_style_calls_survive_kills_at_random_moments(exe: Path) -> None:
    """Kill the program from outside at random moments while queries run: every call
    completes with the fault-free result and every kill is one counted restart."""
    with burgers(exe) as solver:
        counts = FaultCounts()
        step = make_query_step(solver, policy=FaultPolicy(timeout_s=20.0, retries=3), counts=counts)
        states, params = inputs(solver, 4)
        clean = burgers(exe).step(states, params)
        kills, stop = [0], threading.Event()
        rng = random.Random(0)

        def killer() -> None:
            while not stop.wait(rng.uniform(0.02, 0.1)):
                kills[0] += _kill(solver.pid)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            for call in range(2000):  # at least 40 calls, and on until the killer has struck 3 times
                assert torch.equal(step(states, params), clean)
                if call >= 39 and kills[0] >= 3:
                    break
        finally:
            stop.set()
            thread.join()
        step(states, params)  # restarts a program killed after the last call
        assert kills[0] >= 3
        assert counts.restarts == kills[0] == solver.restarts
