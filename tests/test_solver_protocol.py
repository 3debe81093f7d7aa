"""The adapter protocol: black-box guarantee, state validation, step counting."""

from __future__ import annotations

import pytest
import torch

from sciml_zoo import SolverError, StepCounter, black_box, check_state, counting, differentiable
from sciml_zoo.rollout import corrected_rollout
from solvers.toy_diffusion import ToyDiffusion


def _setup():
    solver = ToyDiffusion(resolution=(8, 8))
    params = torch.tensor([[0.01], [0.02]])
    state = solver.initial_state(params, seed=0)
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    return solver, params, state, net


def test_black_box_blocks_all_gradients_to_upstream_network():
    solver, params, state, net = _setup()
    upstream = state + net(state)  # network before the solver
    out = black_box(solver)(upstream, params)
    assert out.grad_fn is None and not out.requires_grad
    # the only path from the weights to the loss goes through the solver: no gradient
    loss = (out**2).sum() + 0.0 * upstream.sum()
    loss.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in net.parameters())


def test_differentiable_mode_passes_gradients_and_agrees_with_black_box():
    solver, params, state, net = _setup()
    upstream = state + net(state)
    out = differentiable(solver)(upstream, params)
    (out**2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert torch.equal(out.detach(), black_box(solver)(upstream.detach(), params))


def test_differentiable_refuses_a_black_box_solver():
    solver, *_ = _setup()
    solver.capabilities = type(solver.capabilities)(differentiable=False)
    with pytest.raises(SolverError, match="not differentiable"):
        differentiable(solver)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.zeros(2, 1, 8, 7), "shape"),
        (torch.full((2, 1, 8, 8), float("nan")), "NaN"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.int64), "dtype"),
        ([[0.0]], "torch.Tensor"),
    ],
)
def test_check_state_names_the_problem(bad, match):
    with pytest.raises(SolverError, match=match):
        check_state(bad, (1, 8, 8), who="toy.step", batch=2)


def test_counting_counts_sample_steps_of_a_rollout():
    solver, params, state, _ = _setup()
    counter = StepCounter()
    corrected_rollout(counting(black_box(solver), counter), None, state, params, 5)
    assert counter.sample_steps == 5 * 2 and counter.calls == 5


def test_first_solver_output_is_reused_not_recomputed():
    solver, params, state, _ = _setup()
    counter = StepCounter()
    step = counting(black_box(solver), counter)
    first = black_box(solver)(state, params)
    a = corrected_rollout(step, None, state, params, 3, first_solver_output=first)
    assert counter.calls == 2
    assert torch.equal(a, corrected_rollout(black_box(solver), None, state, params, 3))
