"""The ``emulator`` estimator: against autograd on a differentiable 2D step, its check, its fallback."""

from __future__ import annotations

import math

import pytest
import torch

from sciml_zoo.errors import DataError
from sciml_zoo.estimators import Emulator, ProbeContext, agreement, exact_vjp, make_estimator
from sciml_zoo.nn import sol_cnn
from sciml_zoo.nn.emulator import emulator_dtype
from sciml_zoo_solvers.ks2d import make_ks2d_solver

SOLVER = make_ks2d_solver(resolution=(16, 16), length=6 * math.pi, dt=0.5)


def step(state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return SOLVER.step(state, params)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every emulator's initial weights come from torch's global generator: seed it per test."""
    torch.manual_seed(0)


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


@pytest.mark.parametrize(("difference", "per_direction"), [("central", 2), ("forward", 1)])
def test_the_check_estimates_the_relative_error_of_the_product_forward_with_half_the_queries(
    trajectory, difference, per_direction
):
    """With many directions and no memory, the check's error estimate matches the measured one, by central
    differences or (the default) forward ones from the step's own output: ``q`` queries per member, not ``2 q``."""
    est = Emulator(
        padding="circular", check_every=1, check_members=8, check_directions=64, check_decay=0.0, difference=difference
    )
    queries = []

    def counted(state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        queries.append(len(state))
        return step(state, params)

    x, v = trajectory[10], trajectory[30] - trajectory[30].mean()
    ctx = _context(x, torch.Generator().manual_seed(1))
    ctx = ProbeContext(counted, ctx.state, ctx.params, ctx.output, None, ctx.generator)
    est.prepare(ctx)
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        (estimate,) = torch.autograd.grad(est._net(xg, ctx.params), xg, grad_outputs=v)
    truth = exact_vjp(step, x, ctx.params, v)
    pooled = float((estimate - truth).norm() / truth.norm())
    est.vjp(ctx, None, v)
    assert est.state["checks"] == 1
    assert sum(queries) == per_direction * 64 * 8 + 8  # the directions, and J v once per member (transpose)
    assert 0.6 * pooled < est.state["last_residual"] < 1.6 * pooled


def test_a_bad_fit_fails_the_check_and_falls_back_until_refreshed(trajectory):
    est = Emulator(  # the emulator's own refresh: no other candidate
        padding="circular",
        check_every=1,
        check_members=8,
        check_directions=8,
        transpose=False,
        shrink=False,
        stencil=False,
    )
    gen = torch.Generator().manual_seed(2)
    for t in range(60):  # fit until trusted
        ctx = _context(trajectory[t % 50], gen)
        est.prepare(ctx)
        est.vjp(ctx, None, trajectory[(t + 7) % 50] - trajectory[(t + 7) % 50].mean())
    assert est.stats()["trusted"] == 1
    with torch.no_grad():  # a forced bad fit
        for p in est._net.body.parameters():
            p.mul_(-3.0)
    failed, fits = est.state["failed_checks"], est.state["fits"]
    ctx = _context(trajectory[3], gen)
    est.prepare(ctx)
    grad = est.vjp(ctx, None, trajectory[20] - trajectory[20].mean())
    assert est.stats()["trusted"] == 0
    assert est.state["failed_checks"] == failed + 1
    assert est.state["fits"] == fits + 1  # fitted once (trusted at the start of the step)
    assert torch.equal(grad, torch.zeros_like(grad))  # the stop-gradient fallback
    ctx = _context(trajectory[4], gen)
    est.prepare(ctx)
    est.vjp(ctx, None, trajectory[21] - trajectory[21].mean())
    assert est.state["fits"] == fits + 1 + est.untrusted_fit_steps  # refreshed harder while untrusted
    assert est.state["fallback_steps"] >= 1


def test_identity_fallback_and_state_round_trip(trajectory):
    est = Emulator(padding="circular", fallback="identity", check_every=1, shrink=False)
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
    state["layout"] = [2, 0, 2, state["layout"][3]]  # another channel count: refused with the field named
    with pytest.raises(DataError, match="field emulator"):
        Emulator(padding="circular").load_state_dict(state)
    state = est.state_dict()
    key = next(iter(state["optimizer"]["state"]))
    state["optimizer"]["state"][key]["exp_avg"] = torch.zeros(3)  # an Adam moment of the wrong shape
    with pytest.raises(DataError, match="field optimizer"):
        Emulator(padding="circular").load_state_dict(state)


def _diffusion_1d(state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """A periodic 1D diffusion step (float32 in, float32 out)."""
    return state + 0.2 * (state.roll(1, -1) - 2 * state + state.roll(-1, -1))


def test_a_1d_emulator_computes_in_float64_on_a_cpu_and_answers_in_the_states_dtype():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 32, generator=gen)  # float32
    params = torch.zeros(4, 0)
    ctx = ProbeContext(_diffusion_1d, x, params, _diffusion_1d(x, params), None, gen)
    assert (emulator_dtype("auto", x), emulator_dtype("auto", x[..., None])) == ("float64", "float32")
    assert emulator_dtype("float32", x) == "float32"
    est = Emulator(padding="circular", check_every=1, stencil=False)  # the emulator itself, in use or not
    single = Emulator(padding="circular", precision="float32")
    for e in (est, single):
        e.prepare(ctx)
    assert est.state["layout"] == [1, 0, 1, "float64"] and single.state["layout"] == [1, 0, 1, "float32"]
    assert all(p.dtype == torch.float64 for p in est._net.parameters())
    single._net.load_state_dict(est._net.state_dict())  # the same weights, cast to float32
    v = torch.randn(x.shape, generator=gen)
    products = []
    for net in (est._net, single._net):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xg, params), xg, grad_outputs=v.to(net.scale.dtype))
        products.append(g)
    assert products[0].dtype == torch.float32  # the cast back is autograd's
    assert torch.allclose(products[0], products[1], rtol=1e-4, atol=1e-5)
    for _ in range(3):  # checks and fits on float32 pairs
        assert est.vjp(ctx, None, v).dtype == torch.float32
    assert est.state["fits"] >= 3 and est.state["checks"] == 3
    state = est.state_dict()
    other = Emulator(padding="circular")
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(other._net.parameters(), est._net.parameters(), strict=True))
    state["layout"][3] = "float32"  # the tensors are float64: refused, the field named
    with pytest.raises(DataError, match="field emulator"):
        Emulator(padding="circular").load_state_dict(state)
    state["layout"][3] = "int8"
    with pytest.raises(DataError, match="field layout"):
        Emulator(padding="circular").load_state_dict(state)


def test_padding_follows_the_correction_network():
    net = sol_cnn(1, 1, dim=2, width=4, depth=2, kernel_size=3, padding_mode="circular")
    assert make_estimator("emulator").for_network(net).padding == "circular"
    assert make_estimator("emulator", {"padding": "zeros"}).for_network(net).padding == "zeros"


def _heat(state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """A self-adjoint step (``J = J^T``): periodic spectral heat flow over a long time."""
    k = torch.fft.fftfreq(state.shape[-1], d=1.0 / state.shape[-1])
    decay = torch.exp(-0.05 * (k[:, None] ** 2 + k[None, : state.shape[-1] // 2 + 1] ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(state) * decay, s=state.shape[-2:])


def test_a_self_adjoint_step_is_served_by_the_transpose_candidate():
    """A fresh emulator fails the check; ``J v`` is exact for ``J = J^T`` and is chosen, one query per member."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 1, 16, 16, generator=gen)
    v = torch.randn(4, 1, 16, 16, generator=gen)
    counted = []

    def heat(state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        counted.append(len(state))
        return _heat(state, params)

    with torch.no_grad():
        ctx = ProbeContext(heat, x, torch.zeros(4, 0), _heat(x, None), None, gen)
    est = Emulator(padding="circular", check_every=1, max_residual=0.2)
    est.prepare(ctx)
    grad = est.vjp(ctx, None, v)
    assert est.state["mode"] == "transpose" and est.stats()["trusted"] == 1
    assert est.state["last_residual"] < 0.05
    truth = exact_vjp(_heat, x, torch.zeros(4, 0), v)
    assert float((grad - truth).norm() / truth.norm()) < 1e-2
    assert sum(counted) == 2 * 4 + 2 + 4  # the check (forward, the default), its 2 transposes, then all 4 members
    off = Emulator(padding="circular", check_every=1, max_residual=0.2, transpose=False, shrink=False)
    off.prepare(ctx)
    assert torch.equal(off.vjp(ctx, None, v), torch.zeros_like(v))  # without the candidate: the fallback
    assert off.state["mode"] == "fallback"


def test_the_transpose_candidate_is_refused_where_the_step_is_not_self_adjoint(trajectory):
    """On the KS step (transport: ``J != J^T``) ``J v`` fails the check; the fit emulator wins."""
    est = Emulator(padding="circular", check_every=1, check_members=8, check_directions=8)
    gen = torch.Generator().manual_seed(5)
    for t in range(60):
        ctx = _context(trajectory[t % 50], gen)
        est.prepare(ctx)
        est.vjp(ctx, None, trajectory[(t + 7) % 50] - trajectory[(t + 7) % 50].mean())
    assert est.state["mode"] == "emulator"
    assert est.state["transpose_error"] > est.state["check_error"]


def test_the_check_step_follows_the_fluctuations_not_the_level():
    from sciml_zoo.estimators.probes import centered_step

    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    h = centered_step(x, 1e-2)
    assert torch.allclose(centered_step(x - 300.0, 1e-2), h, rtol=1e-3)  # a drifting gauge leaves it alone
    assert bool((centered_step(torch.full((1, 1, 4, 4), 5.0), 1e-2) > 0).all())  # raised above round-off


def test_the_emulator_sees_fluctuations_and_level_apart():
    """Shifting the input by a constant shifts the prediction's level input only, not its fluctuation input."""
    from sciml_zoo.nn.emulator import StepEmulator

    net = StepEmulator(1, 0, 2, width=4, depth=2, kernel_size=3, padding="circular")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 4 - 300
    net.calibrate(x, torch.zeros(2, 0), x + 0.1)
    assert abs(float(net.scale) - float((x - x.mean((2, 3), keepdim=True)).std())) < 0.5
    assert float(net.level_scale) >= float(net.scale)
    assert bool(torch.isfinite(net(x, torch.zeros(2, 0))).all())


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_the_emulators_periodic_padding_by_index_equals_circular_padding(dim):
    """The index-wrapped convolutions give the output and the product ``J_E^T v`` of circular ``F.pad``."""
    from sciml_zoo.nn.emulator import StepEmulator

    gen = torch.Generator().manual_seed(dim)
    net = StepEmulator(2, 2, dim, width=5, depth=3, kernel_size=5, padding="circular").double()
    x = torch.randn(3, 2, *[6] * dim, generator=gen, dtype=torch.float64) + 4.0
    p, v = torch.randn(3, 2, generator=gen, dtype=torch.float64), torch.randn(x.shape, generator=gen).double()
    net.calibrate(x, p, x + 0.1 * torch.randn(x.shape, generator=gen).double())
    results = []
    for wrap in (True, False):  # False: the convolutions' own circular padding
        net.wrap = wrap
        xg = x.clone().requires_grad_(True)
        predicted = net(xg, p)
        results.append((predicted, torch.autograd.grad(predicted, xg, grad_outputs=v)[0]))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


def test_a_later_curriculum_stage_starts_from_the_earlier_fit(trajectory):
    est = Emulator(padding="circular", check_every=1)
    gen = torch.Generator().manual_seed(6)
    for t in range(10):
        ctx = _context(trajectory[t], gen)
        est.prepare(ctx)
        est.vjp(ctx, None, trajectory[t + 5] - trajectory[t + 5].mean())
    later = est.fresh()
    later.inherit(est)
    pairs = zip(later._net.state_dict().values(), est._net.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert later.state["mode"] == est.state["mode"] and later.state["check_norm"] == est.state["check_norm"]
    assert later.state["steps"] == 0 and later.state["fits"] == 0  # counters are the stage's own
    later.state["check_norm"] = -1.0
    assert est.state["check_norm"] != -1.0  # a copy, not shared


def _rough_cosine(est: Emulator, x: torch.Tensor, gen: torch.Generator) -> float:
    """Cosine of ``J_E^T v`` with autograd's for a white-noise cotangent (all scales, the rough ones too)."""
    return _cosine(est, x, torch.randn(x.shape, generator=gen))


@pytest.mark.parametrize(
    ("when", "steps", "options"),
    [("always", 48, {}), ("check", 96, {"lr": 3e-3})],  # "check" fits at checks only: a longer run
)
def test_the_tangent_fit_learns_the_jacobian_along_rough_directions(trajectory, when, steps, options):
    """Trajectory states are smooth, so the output fit leaves the Jacobian along rough directions free;
    the last check's own directional differences (already paid for) pin it down, whether they join
    every fit or get their own Adam steps at the next check while the emulator is not trusted."""
    cosines = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        est = Emulator(
            padding="circular",
            check_every=4,
            tangent_weight=weight,
            tangent_when=when,
            untrusted_fit_steps=2,
            **options,
        )
        gen = torch.Generator().manual_seed(0)
        for t in range(steps):
            ctx = _context(trajectory[t % 50], gen)
            est.prepare(ctx)
            est.vjp(ctx, None, torch.randn(ctx.state.shape, generator=gen))
        assert (est.state["probes"] is None) == (weight == 0.0)
        cosines[weight] = _rough_cosine(est, trajectory[55], torch.Generator().manual_seed(5))
    assert cosines[1.0] > cosines[0.0] + 0.2, cosines  # measured 0.81 against 0.45 ("always"), 0.89 against 0.52
    x, p, r, jr = est.state["probes"]  # 2 members x 4 directions, J r measured, not fitted
    assert x.shape == r.shape == jr.shape == (8, 1, 16, 16) and p.shape == (8, 0)
    restored = Emulator(padding="circular", check_every=4, tangent_weight=1.0)
    restored.load_state_dict(est.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.state["probes"], est.state["probes"], strict=True))
    broken = est.state_dict() | {"probes": [x, p]}
    with pytest.raises(DataError, match="probes"):
        restored.load_state_dict(broken)


@pytest.mark.parametrize(
    ("when", "mode", "used"),
    [
        *[("always", m, 1) for m in ("emulator", "transpose", "fallback")],
        *[("untrusted", m, int(m != "emulator")) for m in ("emulator", "transpose", "fallback")],
        *[("fallback", m, int(m == "fallback")) for m in ("emulator", "transpose", "fallback")],
        *[("check", m, 0) for m in ("emulator", "transpose", "fallback")],  # never in the per-step fit
    ],
)
def test_tangent_when_picks_the_modes_whose_fits_use_the_tangent_term(trajectory, when, mode, used):
    est = Emulator(padding="circular", check_every=1, tangent_weight=1.0, tangent_when=when, tangent_every=2)
    gen = torch.Generator().manual_seed(0)
    ctx = _context(trajectory[0], gen)
    est.prepare(ctx)
    est.vjp(ctx, None, torch.randn(ctx.state.shape, generator=gen))  # a check: the probes are stored
    calls = []
    real = est._net.tangent_loss
    est._net.tangent_loss = lambda *a: calls.append(1) or real(*a)
    est.state["mode"] = mode
    for steps in (1, 2):  # tangent_every = 2: at even steps only
        est.state["steps"] = steps
        est._fit(ctx, est._net(ctx.state, ctx.params))
    assert len(calls) == used
    with pytest.raises(Exception, match="tangent_when"):
        make_estimator("emulator", {"tangent_when": "sometimes"})
    with pytest.raises(Exception, match="tangent_every"):
        make_estimator("emulator", {"tangent_every": 0})


@pytest.mark.parametrize("passes", [False, True])
def test_tangent_when_check_fits_a_failed_checks_probes_before_the_next_check(trajectory, passes):
    """``"check"``: no tangent term in the per-step fits; ``tangent_steps`` Adam steps on it (anchored by the
    step's pairs) at a check after one that left neither candidate in use, before it scores the emulator."""
    est = Emulator(
        padding="circular",
        check_every=2,
        tangent_weight=1.0,
        tangent_when="check",
        tangent_steps=3,
        max_residual=1e9 if passes else 1e-9,
    )
    gen = torch.Generator().manual_seed(0)
    calls: list[int] = []
    est.prepare(_context(trajectory[0], gen))
    real = est._net.tangent_loss
    est._net.tangent_loss = lambda *a: calls.append(est.state["steps"]) or real(*a)  # the step it fits at
    for t in range(6):  # checks at steps 0, 2 and 4
        ctx = _context(trajectory[t], gen)
        est.vjp(ctx, None, torch.randn(ctx.state.shape, generator=gen))
        assert (est.state["mode"] == "fallback") == (not passes)
        assert calls.count(t) == (3 if t in (2, 4) and not passes else 0), (t, calls)  # step 0: no probes yet
    assert est.state["failed_checks"] == (0 if passes else 3)
    if not passes:  # one output fit per untrusted step, and the tangent steps counted as fits too
        assert est.state["fits"] == 6 + 2 * 3


def test_shrink_returns_the_checked_multiple_of_an_untrusted_emulator(trajectory):
    """Untrusted, ``shrink`` returns ``a J_E^T v`` (stop-gradient fallback) with the factor the check fitted:
    closer to ``J^T v`` than the fallback's zero, where the switch alone would return zero."""
    errors = {}
    for shrink in (False, True):
        torch.manual_seed(0)
        est = Emulator(padding="circular", check_every=1, check_members=8, check_directions=8, shrink=shrink)
        gen = torch.Generator().manual_seed(7)
        for t in range(6):  # a few fits: not yet trusted
            ctx = _context(trajectory[t], gen)
            est.prepare(ctx)
            v = trajectory[t + 20] - trajectory[t + 20].mean()
            with torch.enable_grad():  # the product before this step's fit
                xg = ctx.state.clone().requires_grad_(True)
                (own,) = torch.autograd.grad(est._net(xg, ctx.params), xg, grad_outputs=v)
            grad = est.vjp(ctx, None, v)
        assert est.state["mode"] == "fallback"
        factor = est.stats()["shrink_factor"]
        assert 0.0 < factor <= 1.0
        assert torch.allclose(grad, factor * own if shrink else torch.zeros_like(own))
        errors[shrink] = float((grad - exact_vjp(step, ctx.state, ctx.params, v)).norm() / v.norm())
    truth = float(exact_vjp(step, ctx.state, ctx.params, v).norm() / v.norm())
    assert errors[False] == pytest.approx(truth)  # the fallback's error is the whole product
    assert errors[True] < 0.8 * errors[False], errors  # measured 0.75 against 1.28


@pytest.mark.parametrize(("num", "calls"), [(-1.0, 0), (1.0, 1)])
def test_an_untrusted_step_skips_the_emulator_backward_while_the_checked_factor_is_zero(
    trajectory, monkeypatch, num, calls
):
    """Between checks, a shrink factor of 0 would multiply ``J_E^T v`` away: it is not computed."""
    est = Emulator(padding="circular", check_every=100, fit_every=1)
    gen = torch.Generator().manual_seed(3)
    ctx = _context(trajectory[0], gen)
    est.prepare(ctx)
    est.vjp(ctx, None, torch.randn(ctx.state.shape, generator=gen))  # step 0: a check
    est.state.update(mode="fallback", shrink_num=num, shrink_den=1.0)  # a = 0 (clipped) or 1
    seen = []
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: seen.append(1) or grad(*a, **k))
    ctx = _context(trajectory[1], gen)
    v = torch.randn(ctx.state.shape, generator=gen)
    with torch.enable_grad():  # the product before this step's fit
        xg = ctx.state.clone().requires_grad_(True)
        (own,) = grad(est._net(xg, ctx.params), xg, grad_outputs=v)
    out = est.vjp(ctx, None, v)
    assert len(seen) == calls
    assert torch.equal(out, torch.zeros_like(v)) if num < 0 else torch.allclose(out, own)
    assert est.state["fits"] == 2  # the fit still runs on the untrusted step (no tangent fit before step 0's check)
