"""Solver-space zeroth-order VJPs (sciml_zoo.estimators.solver_space) on the toy solver.

The toy advection-diffusion-reaction step is differentiable, so every estimate
is checked against ``torch.autograd`` through the same step (float64 where the
comparison is precise).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import (
    ESTIMATORS,
    SolverSpaceEstimator,
    check_step_size,
    compare_vjp,
    exact_vjp,
    make_estimator,
    make_zo_step,
    vjp_estimate,
)
from sciml_zoo.rollout import corrected_rollout
from sciml_zoo.solver import StepCounter, black_box
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

torch.set_num_threads(1)


def _setup(resolution: int = 8, dtype: torch.dtype = torch.float64):
    solver = ToyDiffusion(resolution=(resolution, resolution))
    params = torch.tensor([[0.05], [0.2]], dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    state = solver.initial_state(params, seed=0).to(dtype)
    state = state + 0.3 * torch.randn(state.shape, generator=gen, dtype=dtype)
    return solver, state, params


SOLVER_SPACE = [name for name, cls in ESTIMATORS.items() if issubclass(cls, SolverSpaceEstimator)]


def _est(name: str, **options):
    return make_estimator(name, options)


def _mean_comparison(solver, state, params, estimator: str, **options):
    cos, rel = [], []
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        v = torch.randn(state.shape, generator=gen, dtype=state.dtype)
        generator = torch.Generator().manual_seed(100 + seed)
        c = compare_vjp(solver.step, state, params, v, _est(estimator, **options), generator=generator)
        cos.append(c.cosine.mean())
        rel.append(c.relative_error.mean())
    return float(torch.stack(cos).mean()), float(torch.stack(rel).mean())


@pytest.mark.parametrize("estimator", ["state-rge", "identity-rge"])
def test_random_directions_converge_to_autograd_as_queries_grow(estimator):
    solver, state, params = _setup(resolution=8)  # d = 64 state entries
    results = [_mean_comparison(solver, state, params, estimator, num_directions=q) for q in (4, 16, 64)]
    cosines, errors = zip(*results, strict=True)
    # the error norm shrinks monotonically (nested spans); identity-rge's cosine may dip at
    # intermediate q (a partial projection adds a component orthogonal to the truth)
    assert errors[0] > errors[1] > errors[2], results
    assert cosines[0] < cosines[2], results
    if estimator == "state-rge":
        assert cosines[0] < cosines[1] < cosines[2], results
    # least squares, not averaging: q = d directions span the space, so the estimate is exact
    assert cosines[2] > 0.9999 and errors[2] < 1e-3, results


def test_rge_least_squares_is_exact_projection_not_average():
    solver, state, params = _setup(resolution=8)
    v = torch.randn(state.shape, dtype=state.dtype)
    gen = torch.Generator().manual_seed(3)
    est = vjp_estimate(solver.step, state, params, v, _est("state-rge", num_directions=64, mu=1e-5), generator=gen)
    torch.testing.assert_close(est, exact_vjp(solver.step, state, params, v), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("probes", ["random", "cotangent"])
def test_stencil_fit_is_near_exact_on_translation_invariant_solver(probes):
    solver, state, params = _setup(resolution=16)
    common = {"num_probes": 1, "boundary": "circular", "probes": probes}
    cos, rel = _mean_comparison(solver, state, params, "stencil", kernel_size=3, **common)
    assert cos > 0.99 and rel < 0.05, (cos, rel)
    # the cubic reaction makes the diagonal vary with the state; quadratic features capture it
    cos_q, rel_q = _mean_comparison(solver, state, params, "stencil", features="quadratic", **common)
    assert cos_q > 0.99999 and rel_q < rel / 10, (rel_q, rel)
    # with far fewer queries (2 per sample) than random directions need (32 here)
    cos_r, _ = _mean_comparison(solver, state, params, "state-rge", num_directions=16)
    assert cos > cos_r + 0.3


def test_stop_gradient_is_zero_and_identity_is_v():
    solver, state, params = _setup()
    v = torch.randn(state.shape, dtype=state.dtype)
    zero = vjp_estimate(solver.step, state, params, v, "stop-gradient")
    assert torch.equal(zero, torch.zeros_like(v))
    assert torch.equal(vjp_estimate(solver.step, state, params, v, "identity"), v)
    step = make_zo_step(black_box(solver), "identity")
    x = state.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(step(x, params), x, grad_outputs=v)
    assert torch.equal(grad, v)
    assert not make_zo_step(black_box(solver), "stop-gradient")(x, params).requires_grad


@pytest.mark.parametrize("estimator", SOLVER_SPACE)
def test_forward_bit_identical_and_gradients_reach_upstream_network(estimator):
    solver, state, params = _setup(dtype=torch.float32)
    bb = black_box(solver)
    zo = make_zo_step(bb, _est(estimator, num_directions=4) if "rge" in estimator else estimator)
    net = nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")
    upstream = state + net(state)
    out = zo(upstream, params)
    assert torch.equal(out, bb(upstream, params))
    blind = bb(upstream, params)
    assert blind.grad_fn is None and not blind.requires_grad  # the solver carries no graph
    if estimator == "stop-gradient":
        assert not out.requires_grad  # List et al.: nothing flows back through the solver
        return
    out.pow(2).sum().backward()
    assert net.weight.grad is not None and float(net.weight.grad.abs().sum()) > 0


def test_query_counting_matches_documented_cost():
    solver, state, params = _setup(dtype=torch.float32)
    b, q = state.shape[0], 3
    x = state.clone().requires_grad_(True)
    counter = StepCounter()
    zo = make_zo_step(black_box(solver), _est("state-rge", num_directions=q), counter=counter)
    with torch.no_grad():
        zo(x, params)
    assert (counter.sample_steps, counter.calls) == (b, 1)  # no probes without a gradient
    zo(x, params).sum().backward()
    assert (counter.sample_steps, counter.calls) == (b + b + 2 * q * b, 3)  # one batched call

    counter = StepCounter()
    zo = make_zo_step(
        black_box(solver),
        _est("identity-rge", num_directions=q, difference="forward", query_batch=4),
        counter=counter,
    )
    zo(x, params)
    assert counter.sample_steps == b + q * b and counter.calls == 1 + 2  # 6 rows, chunks of 4

    # stencil, default cotangent probes: forward B, then 2 P B in one call during backward
    counter = StepCounter()
    zo = make_zo_step(black_box(solver), _est("stencil", num_probes=2), counter=counter)
    out = zo(x, params)
    assert (counter.sample_steps, counter.calls) == (b, 1)
    (out * torch.arange(b).view(-1, 1, 1, 1)).sum().backward()
    assert (counter.sample_steps, counter.calls) == (b + 2 * 2 * b, 2)
    zo(x, params).mul(0).sum().backward()  # a zero cotangent costs no query
    assert counter.sample_steps == 2 * b + 2 * 2 * b

    # stencil, random probes in the forward, reused for refit_every steps
    counter = StepCounter()
    zo = make_zo_step(black_box(solver), _est("stencil", probes="random", num_probes=2, refit_every=2), counter=counter)
    s = x
    for _ in range(3):
        s = zo(s, params)
    assert counter.sample_steps == 3 * b + 2 * (2 * 2 * b)  # fits at steps 0 and 2
    s.sum().backward()
    assert counter.sample_steps == 3 * b + 2 * (2 * 2 * b)  # the backward is solver-free
    zo.reset()
    zo(s.detach().requires_grad_(True), params)
    assert counter.sample_steps == 4 * b + 3 * (2 * 2 * b)

    counter = StepCounter()
    zo = make_zo_step(black_box(solver), "identity", counter=counter)
    zo(x, params).sum().backward()
    assert counter.sample_steps == b


def test_step_size_check_flags_round_off_in_float32():
    _, state, params = _setup(dtype=torch.float32)
    with pytest.raises(ValueError, match="float64"):
        check_step_size(state, 1e-6)
    assert check_step_size(state, 1e-2).shape == (state.shape[0],)
    check_step_size(state.double(), 1e-6)  # fine in float64
    with pytest.raises(ValueError, match="positive"):
        check_step_size(state, 0.0)
    solver = ToyDiffusion(resolution=(8, 8))
    zo = make_zo_step(black_box(solver), _est("stencil", mu=1e-6))
    with pytest.raises(ValueError, match="mu"):
        zo(state.requires_grad_(True), params)  # checked at first use


def test_bad_estimator_or_option_names_valid_choices():
    solver = ToyDiffusion(resolution=(8, 8))
    with pytest.raises(ConfigError, match="stencil"):
        make_zo_step(black_box(solver), "spsa")
    with pytest.raises(ConfigError, match="num_directions"):
        _est("state-rge", num_probes=3)
    with pytest.raises(ConfigError, match="boundary"):
        _est("stencil", boundary="periodic")
    with pytest.raises(ConfigError, match="kernel_size"):
        _est("stencil", kernel_size=4)
    with pytest.raises(ConfigError, match="refit_every"):
        _est("stencil", refit_every=4)  # cotangent probes


@pytest.mark.parametrize("estimator", ["state-rge", "stencil"])
def test_mask_perturbs_and_returns_valid_entries_only(estimator):
    solver, state, params = _setup()
    mask = torch.ones(state.shape[1:], dtype=torch.bool)
    mask[:, 0, :] = False
    seen = []

    def spy(x, p):
        seen.append(x.clone())
        return solver.step(x, p)

    v = torch.randn(state.shape, dtype=state.dtype)
    est = vjp_estimate(spy, state, params, v, estimator, mask=mask)
    probes = seen[-1].view(-1, *state.shape)
    assert torch.equal(probes[..., 0, :], state[None, :, :, 0, :].expand_as(probes[..., 0, :]))
    assert not torch.equal(probes[..., 1:, :], state[None, :, :, 1:, :].expand_as(probes[..., 1:, :]))
    assert torch.equal(est[:, :, 0, :], torch.zeros_like(est[:, :, 0, :]))
    assert float(est[:, :, 1:, :].abs().sum()) > 0


def test_three_step_rollout_weight_gradients_match_differentiable_training():
    solver, state, params = _setup(resolution=16)
    reference = state.roll(1, dims=-1)[:, None].expand(-1, 3, -1, -1, -1)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"),
        nn.Tanh(),
        nn.Conv2d(4, 1, 3, padding=1, padding_mode="circular"),
    ).double()

    def correction(x, p):
        return 0.1 * net(x)

    def weight_grad(step):
        net.zero_grad()
        traj = corrected_rollout(step, correction, state, params, 3)
        (traj - reference).pow(2).mean().backward()
        return torch.cat([w.grad.flatten() for w in net.parameters()])

    exact = weight_grad(solver.step)
    cos = {}
    for estimator in ("stop-gradient", "stencil"):
        zo = make_zo_step(
            black_box(solver), _est(estimator, **({"boundary": "circular"} if estimator == "stencil" else {}))
        )
        cos[estimator] = float(torch.cosine_similarity(weight_grad(zo), exact, dim=0))
    assert cos["stencil"] > 0.9, cos
    assert 1 - cos["stencil"] < 0.01 * (1 - cos["stop-gradient"]), cos
    assert (
        compare_vjp(
            solver.step, state, params, torch.ones_like(state), _est("stencil", boundary="circular")
        ).cosine.min()
        > 0.99
    )
