"""One query path: every method, evaluation and diagnosis reach the solver through one fault policy.

Issue 21 findings 10 and 11: FO-SOL training and ``evaluate`` with a solver
raising in 30% of calls are contained and counted like ZO-SOL; a solver's own
``SystemExit``/``KeyboardInterrupt`` is a fault, a real Ctrl-C still interrupts;
a training simulation dropped too often stops the run with one line naming it.
"""

from __future__ import annotations

import os
import random
import signal

import pytest
import torch
from torch import Tensor

from sciml_zoo.cli import main
from sciml_zoo.config import ModelConfig, RunConfig, TrainConfig
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.errors import ConfigError, SolverError
from sciml_zoo.evaluate import evaluate_methods
from sciml_zoo.faults import FaultCounts, FaultPolicy, make_query_step
from sciml_zoo.registry import _RUNTIME, SolverTrust, register, solver_trust
from sciml_zoo.train.loop import train
from sciml_zoo.train.queries import MIN_DRAWS, MemberDrops
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

SMALL = ModelConfig(width=6, kernel_size=3)


class _Failing(ToyDiffusion):
    """The differentiable, batched toy solver, failing as configured on the class.

    ``rate``: share of calls that raise ``error()`` (seeded stream); ``bad``: a
    diffusivity for which every call raises (the member that always fails).
    """

    rate = 0.0
    bad: float | None = None
    error: type[BaseException] | None = None
    rng = random.Random(0)

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        cls = type(self)
        if cls.bad is not None and bool((params[:, 0] == cls.bad).any()):
            raise RuntimeError(f"no convergence at diffusivity {cls.bad}")
        if cls.rate and cls.rng.random() < cls.rate:
            raise SystemExit(3) if cls.error is SystemExit else RuntimeError("injected")
        return super().step(state, params)


@pytest.fixture()
def failing():
    """``_Failing`` registered as ``failing-toy`` and put in place of the dataset's solver (as ``--solver`` does)."""
    _Failing.rate, _Failing.bad, _Failing.error, _Failing.rng = 0.0, None, None, random.Random(0)
    register("failing-toy", lambda **kw: _Failing(**kw))
    with solver_trust(SolverTrust(solver="failing-toy")):
        yield _Failing
    _RUNTIME.pop("failing-toy")


def _run(toy_dataset, **kw) -> RunConfig:
    base = dict(method="fo-sol", unroll=2, iterations=6, batch_size=2, lr=3e-3, checkpoint_every=6, curriculum=False)
    return RunConfig(str(toy_dataset), SMALL, TrainConfig(**{**base, **kw}))


def _weights(run_dir) -> dict[str, Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def test_fo_sol_with_a_solver_raising_in_30_percent_of_calls_is_contained_and_counted(tmp_path, toy_dataset, failing):
    clean = train(_run(toy_dataset), tmp_path / "clean", progress=False)
    failing.rate = 0.3
    summary = train(_run(toy_dataset, retries=8), tmp_path / "flaky", progress=False)
    assert summary["iterations_done"] == 6
    assert summary["faults"]["failures"] > 0 and summary["faults"]["retries"] == summary["faults"]["failures"]
    assert summary["faults"]["dropped_members"] == 0
    # retried queries answer what clean ones do: the same training, gradient through the solver included
    assert clean["final_loss"] == summary["final_loss"]
    a, b = _weights(tmp_path / "clean"), _weights(tmp_path / "flaky")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_with_a_solver_raising_in_30_percent_of_calls_is_contained_and_counted(toy_dataset, failing):
    data = load_dataset(toy_dataset)
    expected, _ = evaluate_methods(data, {"SRC": None}, steps=10, solver=ToyDiffusion(**_options(data)))
    failing.rate = 0.3
    counts = FaultCounts()
    got, _ = evaluate_methods(data, {"SRC": None}, steps=10, solver=_Failing(**_options(data)), counts=counts)
    assert counts.failures > 0 and counts.retries == counts.failures
    assert bool((got == expected).all())


def test_evaluate_names_the_test_simulation_that_keeps_failing(toy_dataset, failing):
    data = load_dataset(toy_dataset)
    failing.bad = float(data.test.params[1, 0])
    with pytest.raises(SolverError, match=r"evaluating SRC: .*test simulation 1 \(diffusivity=0\.008\) at step 1"):
        evaluate_methods(data, {"SRC": None}, steps=3, solver=_Failing(**_options(data)))


def _options(data) -> dict:
    return data.recipe.solver_kwargs("source")


def test_a_solver_raising_systemexit_is_a_counted_fault_not_an_exit(tmp_path, toy_dataset, failing, capsys):
    failing.rate, failing.error = 0.3, SystemExit
    code = main(
        ["train", "--data", str(toy_dataset), "--out", str(tmp_path / "run"), "--quiet", "--solver", "failing-toy"]
        + ["--set", "train.method=non", "--set", "train.iterations=4", "--set", "train.retries=8"]
        + ["--set", "model.width=4", "--set", "model.kernel_size=3"]
    )
    assert code == 0, capsys.readouterr().err
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"failures": 0' not in summary


def test_solver_exits_and_interrupts_are_faults_but_a_real_ctrl_c_interrupts():
    calls = []

    class Raising(ToyDiffusion):
        def step(self, state, params):
            calls.append(len(state))
            if len(calls) == 1:
                raise SystemExit(3)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super().step(state, params)

    solver = Raising(resolution=(8, 6))
    params = torch.tensor([[0.01], [0.02]])
    states = solver.initial_state(params, seed=0)
    counts = FaultCounts()
    out = make_query_step(solver, policy=FaultPolicy(retries=2), counts=counts)(states, params)
    assert torch.equal(out, ToyDiffusion(resolution=(8, 6)).step(states, params))
    assert (counts.failures, counts.retries) == (3, 3)  # 2 members fail the first call, member 0 its first retry

    class Signalled(ToyDiffusion):
        def step(self, state, params):
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C arrives during the query
            return super().step(state, params)

    counts = FaultCounts()
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, however pytest started
    try:
        with pytest.raises(KeyboardInterrupt):
            make_query_step(Signalled(resolution=(8, 6)), policy=FaultPolicy(retries=2), counts=counts)(states, params)
        assert counts.failures == 0
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the watch put the handler back
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_a_simulation_that_always_fails_stops_the_run_naming_it(tmp_path, toy_dataset, failing):
    failing.bad = 0.006  # training simulation 1's diffusivity
    with pytest.raises(SolverError, match=r"training simulation 1 \(diffusivity=0\.006\) was dropped in \d+ of \d+"):
        train(
            _run(toy_dataset, method="non", iterations=40, batch_size=3, checkpoint_every=2), tmp_path, progress=False
        )
    tallies = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["parts"]["member_drops"]
    assert tallies["dropped"][1] == tallies["drawn"][1] > 0 and tallies["dropped"][0] == tallies["dropped"][2] == 0


def test_member_drops_judge_shares_after_enough_draws():
    drops = MemberDrops(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), ("a", "b"), 0.1)
    one = torch.tensor([[3.0, 4.0]])
    for _ in range(MIN_DRAWS - 1):
        drops.record(one, [])  # always dropped, but too few draws to judge
    with pytest.raises(SolverError, match=r"simulation 1 \(a=3, b=4\) was dropped in 10 of 10 draws.*last error: x"):
        drops.record(one, [], "x")
    again = MemberDrops(drops.params, ("a", "b"), 1.0)
    again.load_state_dict(drops.state_dict())
    again.check()  # a share of 1 never stops
    assert again.state_dict() == {"drawn": [0, 10], "dropped": [0, 10]}
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ConfigError, match="max_dropped_share"):
            TrainConfig(max_dropped_share=bad)


def test_generate_retries_a_reference_step_that_raised_systemexit(tmp_path, toy_recipe, toy_dataset, monkeypatch):
    from sciml_zoo.data.generate import generate_dataset
    from sciml_zoo.data.store import open_dataset

    original, calls = ToyDiffusion.step, {"n": 0}

    def exits(self, state, params):
        calls["n"] += 1
        if calls["n"] in (5, 12):
            raise SystemExit(3)
        return original(self, state, params)

    monkeypatch.setattr(ToyDiffusion, "step", exits)
    out = generate_dataset(toy_recipe, tmp_path / "toy.h5", progress=False)
    assert calls["n"] > 12
    assert (open_dataset(out)["state"].values == open_dataset(toy_dataset)["state"].values).all()
