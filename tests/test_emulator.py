"""The ``emulator`` estimator: against autograd on a differentiable 2D step, its check, its fallback."""

from __future__ import annotations

import math

import pytest
import torch

from sciml_zoo.errors import DataError
from sciml_zoo.estimators import Emulator, ProbeContext, agreement, exact_vjp, make_estimator
from sciml_zoo.nn import sol_cnn
from sciml_zoo_solvers.ks2d import make_ks2d_solver

SOLVER = make_ks2d_solver(resolution=(16, 16), length=6 * math.pi, dt=0.5)


def step(state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return SOLVER.step(state, params)


@pytest.fixture(scope="module")
def trajectory() -> torch.Tensor:
    """``(T, B, 1, 16, 16)`` states on the 2D KS attractor (40 frames of burn-in)."""
    x = SOLVER.initial_state(torch.zeros(8, 0), seed=3)
    with torch.no_grad():
        for _ in range(40):
            x = step(x, torch.zeros(8, 0))
        frames = [x]
        for _ in range(60):
            frames.append(step(frames[-1], torch.zeros(8, 0)))
    return torch.stack(frames)


def _context(x: torch.Tensor, gen: torch.Generator) -> ProbeContext:
    params = torch.zeros(len(x), 0)
    with torch.no_grad():
        out = step(x, params)
    return ProbeContext(step, x, params, out, None, gen)


def _cosine(est: Emulator, x: torch.Tensor, v: torch.Tensor) -> float:
    """Cosine of the emulator's own ``J_E^T v`` (no fitting, no check) with autograd's."""
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(est._net(xg, torch.zeros(len(x), 0)), xg, grad_outputs=v)
    return float(agreement(grad, exact_vjp(step, x, torch.zeros(len(x), 0), v)).cosine.mean())


def test_the_online_fit_approaches_autograd_on_a_differentiable_2d_step(trajectory):
    est = Emulator(padding="circular", check_every=10**6, untrusted_fit_steps=2)
    gen = torch.Generator().manual_seed(0)
    held_out, v = trajectory[50], trajectory[55] - trajectory[55].mean()  # a smooth cotangent
    est.prepare(_context(trajectory[0], gen))
    before = _cosine(est, held_out, v)
    cosines = []
    for t in range(40):
        ctx = _context(trajectory[t], gen)
        est.prepare(ctx)
        est.vjp(ctx, None, torch.randn(ctx.state.shape, generator=gen))
        if t in (9, 39):
            cosines.append(_cosine(est, held_out, v))
    assert est.state["fits"] == 80
    assert before < cosines[0] < cosines[1]  # the error shrinks as the emulator is refreshed
    assert cosines[1] > 0.9


def test_the_check_estimates_the_relative_error_of_the_product(trajectory):
    """With many directions and no memory, the check's error estimate matches the measured one."""
    est = Emulator(padding="circular", check_every=1, check_members=8, check_directions=64, check_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    x = trajectory[10]
    ctx = _context(x, gen)
    est.prepare(ctx)
    v = trajectory[30] - trajectory[30].mean()
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        (estimate,) = torch.autograd.grad(est._net(xg, ctx.params), xg, grad_outputs=v)
    truth = exact_vjp(step, x, ctx.params, v)
    pooled = float((estimate - truth).norm() / truth.norm())
    est.vjp(ctx, None, v)
    assert est.state["checks"] == 1
    assert 0.6 * pooled < est.state["last_residual"] < 1.6 * pooled


def test_a_bad_fit_fails_the_check_and_falls_back_until_refreshed(trajectory):
    est = Emulator(padding="circular", check_every=1, check_members=8, check_directions=8)
    gen = torch.Generator().manual_seed(2)
    for t in range(60):  # fit until trusted
        ctx = _context(trajectory[t % 50], gen)
        est.prepare(ctx)
        est.vjp(ctx, None, trajectory[(t + 7) % 50] - trajectory[(t + 7) % 50].mean())
    assert est.state["trusted"]
    with torch.no_grad():  # a forced bad fit
        for p in est._net.body.parameters():
            p.mul_(-3.0)
    failed, fits = est.state["failed_checks"], est.state["fits"]
    ctx = _context(trajectory[3], gen)
    est.prepare(ctx)
    grad = est.vjp(ctx, None, trajectory[20] - trajectory[20].mean())
    assert not est.state["trusted"]
    assert est.state["failed_checks"] == failed + 1
    assert est.state["fits"] == fits + 1  # fitted once (trusted at the start of the step)
    assert torch.equal(grad, torch.zeros_like(grad))  # the stop-gradient fallback
    ctx = _context(trajectory[4], gen)
    est.prepare(ctx)
    est.vjp(ctx, None, trajectory[21] - trajectory[21].mean())
    assert est.state["fits"] == fits + 1 + est.untrusted_fit_steps  # refreshed harder while untrusted
    assert est.state["fallback_steps"] >= 1


def test_identity_fallback_and_state_round_trip(trajectory):
    est = Emulator(padding="circular", fallback="identity", check_every=1)
    gen = torch.Generator().manual_seed(3)
    ctx = _context(trajectory[0], gen)
    est.prepare(ctx)
    v = torch.randn(ctx.state.shape, generator=gen)
    assert torch.equal(est.vjp(ctx, None, v), v)  # a fresh emulator is not trusted
    state = est.state_dict()
    other = Emulator(padding="circular", fallback="identity", check_every=1)
    other.load_state_dict(state)
    pairs = zip(other._net.state_dict().values(), est._net.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    state["layout"] = [2, 0, 2]  # another channel count: refused with the field named
    with pytest.raises(DataError, match="field emulator"):
        Emulator(padding="circular").load_state_dict(state)
    state = est.state_dict()
    key = next(iter(state["optimizer"]["state"]))
    state["optimizer"]["state"][key]["exp_avg"] = torch.zeros(3)  # an Adam moment of the wrong shape
    with pytest.raises(DataError, match="field optimizer"):
        Emulator(padding="circular").load_state_dict(state)


def test_padding_follows_the_correction_network():
    net = sol_cnn(1, 1, dim=2, width=4, depth=2, kernel_size=3, padding_mode="circular")
    assert make_estimator("emulator").for_network(net).padding == "circular"
    assert make_estimator("emulator", {"padding": "zeros"}).for_network(net).padding == "zeros"
