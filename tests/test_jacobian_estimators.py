"""The jacobian, banded and auto estimators (N-D), the safeguard, determinism and config-time validation."""

from __future__ import annotations

import json

import pytest
import torch

from sciml_zoo.config import TrainConfig
from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import (
    ESTIMATORS,
    Auto,
    Banded,
    Emulator,
    Jacobian,
    StateRGE,
    Stencil,
    compare_vjp,
    exact_vjp,
    make_estimator,
    make_zo_step,
    vjp_estimate,
)
from sciml_zoo.provenance import to_jsonable
from sciml_zoo.solver import StepCounter
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

torch.set_num_threads(1)
F64 = torch.float64


def burgers(u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """One explicit periodic viscous Burgers step on (B, 1, N) (nonlinear, radius 1)."""
    nu = params[:, :1, None]
    up, um = u.roll(-1, -1), u.roll(1, -1)
    return u + 0.1 * (-u * (up - um) / 2 + nu * (up - 2 * u + um))


def ks_like(u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """A two-field, radius-2, nonlinear periodic step on (B, 2, N) (KS-like 4th-order term)."""
    lap = u.roll(-1, -1) - 2 * u + u.roll(1, -1)
    bih = lap.roll(-1, -1) - 2 * lap + lap.roll(1, -1)
    a, b = u[:, :1], u[:, 1:]
    da = -0.01 * bih[:, :1] - 0.05 * a * (a.roll(-1, -1) - a.roll(1, -1)) + 0.02 * b
    db = 0.05 * lap[:, 1:] - 0.03 * a * b
    return u + torch.cat([da, db], 1)


def _toy2d(n: int = 8):
    solver = ToyDiffusion(resolution=(n, n))
    params = torch.tensor([[0.05], [0.2]], dtype=F64)
    state = solver.initial_state(params, seed=0).to(F64)
    state = state + 0.3 * torch.randn(state.shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    return solver.step, state, params


def _1d(step, channels: int, n: int = 24, batch: int = 3):
    g = torch.Generator().manual_seed(1)
    state = torch.randn(batch, channels, n, generator=g, dtype=F64)
    params = torch.full((batch, 1), 0.3, dtype=F64)
    return step, state, params


CASES = {
    "burgers-1d": lambda: _1d(burgers, 1),
    "ks-like-1d": lambda: _1d(ks_like, 2),
    "toy-diffusion-2d": _toy2d,
}


def _cos_err(step, state, params, est, seed: int = 0):
    v = torch.randn(state.shape, generator=torch.Generator().manual_seed(seed), dtype=state.dtype)
    a = compare_vjp(step, state, params, v, est, generator=torch.Generator().manual_seed(seed))
    return float(a.cosine.min()), float(a.relative_error.max())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "est", [Jacobian(), Banded(radius=2), Auto(), Auto(max_dense=0)], ids=["jacobian", "banded", "auto", "auto-banded"]
)
def test_new_estimators_match_autograd_in_1d_and_2d(case, est):
    step, state, params = CASES[case]()
    cos, err = _cos_err(step, state, params, est)
    assert cos > 1 - 1e-9 and err < 1e-5, (cos, err)


@pytest.mark.parametrize("est_cls", [Jacobian, Banded])
def test_error_shrinks_with_smaller_mu_forward_differences(est_cls):
    step, state, params = _1d(lambda x, p: burgers(x, p) - 0.1 * x**3, 1)  # curvature along each coordinate
    errs = [_cos_err(step, state, params, est_cls(mu=mu, difference="forward"))[1] for mu in (1e-1, 1e-2, 1e-3)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-2, errs


def test_banded_error_shrinks_as_the_radius_reaches_the_stencil():
    step, state, params = _1d(ks_like, 2)  # true radius 2
    errs = [_cos_err(step, state, params, Banded(radius=r))[1] for r in (0, 1, 2)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6, errs


@pytest.mark.parametrize(
    ("shape", "radius", "boundary"),
    [
        ((13,), 1, "periodic"),
        ((10,), 2, "open"),
        ((6, 9), 1, "periodic"),
        ((7, 5), 1, "open"),
        ((4, 6, 5), 1, "periodic"),
    ],
)
def test_banded_is_exact_on_a_local_linear_step_with_varying_coefficients(shape, radius, boundary):
    """A linear step whose coefficients differ in every cell (no translation invariance)."""
    g = torch.Generator().manual_seed(0)
    c, ndim = 2, len(shape)
    offsets = torch.cartesian_prod(*[torch.arange(-radius, radius + 1)] * ndim).view(-1, ndim)
    coef = torch.randn(len(offsets), c, c, *shape, generator=g, dtype=F64)

    def step(x, params):
        out = torch.zeros_like(x)
        for k, off in enumerate(offsets.tolist()):
            if boundary == "periodic":
                shifted = x.roll([-o for o in off], list(range(2, 2 + ndim)))
            else:  # zero outside the grid
                shifted = torch.nn.functional.pad(x, [radius] * 2 * ndim)[_window(radius, off, shape)]
            out = out + torch.einsum("oi...,bi...->bo...", coef[k], shifted)
        return out

    state = torch.randn(2, c, *shape, generator=g, dtype=F64)
    params = torch.zeros(2, 1, dtype=F64)
    v = torch.randn(state.shape, generator=g, dtype=F64)
    counter = StepCounter()
    est = vjp_estimate(step, state, params, v, Banded(radius=radius, boundary=boundary), counter=counter)
    torch.testing.assert_close(est, exact_vjp(step, state, params, v), rtol=1e-7, atol=1e-8)
    probes = Banded(radius=radius, boundary=boundary).num_probes(state, None)
    assert counter.sample_steps == 2 + 2 * 2 * probes  # the forward, then one batched call of 2 * probes rows
    assert probes <= c * torch.tensor(shape).prod()


def _window(radius, off, shape):
    return (slice(None), slice(None), *(slice(radius + o, radius + o + n) for o, n in zip(off, shape, strict=True)))


def test_banded_colouring_counts_and_wrap():
    state = torch.zeros(1, 2, 48)
    assert Banded(radius=2).num_probes(state, None) == 2 * 6  # 5 does not divide 48: 9 blocks of 5-6
    assert Banded(radius=2, boundary="open").num_probes(state, None) == 2 * 5
    assert Banded(radius=1).num_probes(torch.zeros(1, 3, 12, 12), None) == 3 * 9
    assert Banded(radius=2).num_probes(torch.zeros(1, 1, 7), None) == 7  # one block: coordinate-wise
    assert Banded(radius=1).num_probes(torch.zeros(1, 1, 13), None) == 4  # blocks 4, 3, 3, 3
    assert Banded(radius=2).num_probes(torch.zeros(1, 1, 64, 64), None) == 6 * 6  # 12 blocks of 5-6


def test_auto_picks_dense_for_small_and_banded_for_large_states():
    params = torch.tensor([[0.1]], dtype=F64)
    # 8 x 8 = 64 entries <= max_dense: every column; 20 x 20 = 400 > 100: colours of period 5 (r = 2)
    for n, max_dense, mode, probes in ((8, 512, "jacobian", 64), (20, 100, "banded", 25)):
        state = torch.randn(1, 1, n, n, generator=torch.Generator().manual_seed(0), dtype=F64)
        solver = ToyDiffusion(resolution=(n, n))
        est, counter = Auto(max_dense=max_dense, check_every=1000), StepCounter()
        vjp_estimate(solver.step, state, params, torch.ones_like(state), est, counter=counter)
        assert est.stats()["mode"] == mode
        assert counter.sample_steps == 1 + 2 * (probes + 1)  # forward, probes + the held-out check, central


def _nonlocal(x, params):
    """A step coupling every cell to cells 5 away and to the mean: not local within radius 0."""
    return x + 0.5 * x.roll(5, -1) + 0.3 * x.mean(-1, keepdim=True)


def test_safeguard_falls_back_to_identity_and_counts_on_a_nonlocal_step():
    step, state, params = _1d(_nonlocal, 1, n=32)
    est = Auto(max_dense=0, radius=0, check_every=1)
    v = torch.randn(state.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    got = vjp_estimate(step, state, params, v, est)
    stats = est.stats()
    assert stats["mode"] == "banded" and stats["checks"] == 1 and stats["failed_checks"] == 1
    assert stats["fallback_steps"] == 1 and stats["fallback_members"] == state.shape[0]
    assert stats["last_residual"] > est.max_residual
    torch.testing.assert_close(got, v)  # identity, not the wrong banded model
    assert torch.isfinite(got).all()
    assert stats["radius"] == 0 and stats["widened"] == 0  # max_dense=0: no wider band is affordable
    raw = vjp_estimate(step, state, params, v, Banded(radius=0))  # what it saved us from
    assert compare_vjp(step, state, params, v, Banded(radius=0)).cosine.min() < 0.9
    assert not torch.allclose(raw, v)


def test_safeguard_widens_until_the_band_fits():
    def wide(x, params):  # local within 3 cells
        return x + 0.2 * (x.roll(3, -1) + x.roll(-3, -1)) + 0.1 * x.roll(1, -1)

    step, state, params = _1d(wide, 1, n=240)
    est = Auto(max_dense=100, radius=1, check_every=1000)
    zo = make_zo_step(step, est)
    x = state.clone().requires_grad_(True)
    for _ in range(4):
        zo(x, params).sum().backward()
    stats = est.stats()
    assert stats["mode"] == "banded" and stats["radius"] == 4 and stats["widened"] == 2, stats  # 1 -> 2 -> 4
    assert stats["failed_checks"] == 2 and stats["fallback_steps"] == 2, stats
    assert stats["checks"] == 3  # the first use, after every failure, then every check_every steps
    v = torch.randn(state.shape, dtype=F64)
    assert compare_vjp(step, state, params, v, est).cosine.min() > 1 - 1e-9


def test_safeguard_falls_back_on_a_noisy_black_box():
    noise = torch.Generator().manual_seed(9)

    def noisy(x, params):
        return burgers(x, params) + 1e-2 * torch.randn(x.shape, generator=noise, dtype=x.dtype)

    _, state, params = _1d(burgers, 1, n=16)
    est = Auto(check_every=1)
    v = torch.randn(state.shape, dtype=F64)
    got = vjp_estimate(noisy, state, params, v, est)
    assert est.stats()["fallback_members"] == state.shape[0]
    torch.testing.assert_close(got, v)


@pytest.mark.parametrize(
    "est",
    [StateRGE(num_directions=3), Stencil(probes="random"), Stencil(), Auto(check_every=1), Banded(), Jacobian()],
    ids=lambda e: e.name,
)
def test_same_generator_seed_same_estimate_and_global_rng_untouched(est):
    step, state, params = _1d(ks_like, 2)
    v = torch.randn(state.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    before = torch.random.get_rng_state()
    runs = [
        vjp_estimate(step, state, params, v, est.fresh(), generator=torch.Generator().manual_seed(11)) for _ in "ab"
    ]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(runs[0], runs[1])


BAD_OPTIONS = {
    "stop-gradient": ({"mu": 1e-2}, "mu"),
    "identity": ({"radius": 1}, "radius"),
    "state-rge": ({"num_directions": 0}, "num_directions=0"),
    "identity-rge": ({"difference": "backward"}, "difference='backward'"),
    "stencil": ({"kernel_size": 4}, "kernel_size=4"),
    "jacobian": ({"mu": 2.0}, "mu=2.0"),
    "banded": ({"radius": -1}, "radius=-1"),
    "auto": ({"max_residual": 0}, "max_residual=0"),
    "emulator": ({"check_every": 0}, "check_every=0"),
    "weight-rge": ({"query_batch": 0}, "query_batch=0"),
    "weight-cge": ({"difference": "centre"}, "difference='centre'"),
    "sparse-cge": ({"redraw_every": 0}, "redraw_every=0"),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_bad_options_fail_at_config_time_for_every_estimator(name):
    options, match = BAD_OPTIONS[name]
    with pytest.raises(ConfigError, match=match):
        make_estimator(name, options)
    with pytest.raises(ConfigError, match=match):
        TrainConfig(method="zo-sol", estimator=name, estimator_options=options)
    make_estimator(name, {})  # defaults are valid


def test_train_config_default_object_and_provenance():
    assert isinstance(TrainConfig(method="zo-sol").estimator, Emulator)
    cfg = TrainConfig(method="zo-sol", estimator=Banded(radius=1))
    record = to_jsonable(cfg)
    assert record["estimator"] == {
        "name": "banded",
        "radius": 1,
        "boundary": "periodic",
        "mu": 0.01,
        "difference": "central",
        "query_batch": None,
    }
    assert TrainConfig(method="zo-sol", estimator=record["estimator"]) == cfg  # round trip through JSON
    assert TrainConfig(method="zo-sol", estimator="banded", estimator_options={"radius": 1}) == cfg
    assert cfg.label == "ZO-SOL[banded radius=1]"  # options that differ from the defaults tell runs apart
    assert TrainConfig(method="zo-sol", estimator="banded").label == "ZO-SOL[banded]"
    assert TrainConfig(method="zo-sol", estimator=Banded(mu=5e-3)).label == "ZO-SOL[banded mu=0.005]"
    with pytest.raises(ConfigError, match="fields"):
        TrainConfig(method="zo-sol", estimator=Banded(), estimator_options={"radius": 1})
    with pytest.raises(ConfigError, match="weight-rge"):
        TrainConfig(method="zo-sol", estimator="rge")  # renamed, with a hint


def test_state_dict_is_tensors_and_json_and_round_trips():
    step, state, params = _1d(burgers, 1)
    est = Auto(check_every=1)
    zo = make_zo_step(step, est)
    x = state.clone().requires_grad_(True)
    zo(x, params).sum().backward()
    saved = zo.state_dict()
    json.dumps({k: v for k, v in saved.items() if not isinstance(v, torch.Tensor)})
    fresh = est.fresh()
    assert fresh.stats()["checks"] == 0
    fresh.load_state_dict(saved)
    assert fresh.stats() == est.stats()
    stencil = Stencil(probes="random", refit_every=3)
    zo = make_zo_step(step, stencil)
    zo(x, params).sum().backward()
    saved = stencil.state_dict()
    assert set(saved["fit"]) == {"kernel", "center", "scale", "params"}
    assert all(isinstance(t, torch.Tensor) for t in saved["fit"].values())


@pytest.mark.parametrize("shape", [(32,), (8, 8), (6, 6, 6)], ids=["1d", "2d", "3d"])
def test_stencil_is_n_dimensional(shape):
    """A translation-invariant periodic diffusion step in 1-3D: a 3^ndim stencil fits it exactly."""
    ndim = len(shape)
    dims = list(range(2, 2 + ndim))

    def step(x, params):
        lap = sum(x.roll(s, d) for d in dims for s in (1, -1)) - 2 * ndim * x
        return x + 0.1 * lap

    state = torch.randn(2, 1, *shape, generator=torch.Generator().manual_seed(0), dtype=F64)
    params = torch.zeros(2, 1, dtype=F64)
    cos, err = _cos_err(step, state, params, Stencil(kernel_size=3, boundary="circular"))
    assert cos > 1 - 1e-9 and err < 1e-5, (cos, err)
    cos_b, err_b = _cos_err(burgers, *_1d(burgers, 1)[1:], Stencil(kernel_size=3, boundary="circular"))
    assert cos_b > 0.99, cos_b  # nonlinear: constant kernels are an approximation


def test_auto_falls_back_when_the_step_size_is_lost_in_round_off_after_the_first_use():
    step, state, params = _1d(burgers, 1, n=256)
    est = Auto(mu=1e-3)  # float32: needs rms(state) / max|state| > ~0.12
    zo = make_zo_step(step, est)
    x = state.float().clone().requires_grad_(True)
    zo(x, params.float()).sum().backward()  # first use: fine
    spiky = torch.zeros_like(x.detach())
    spiky[..., 0] = 1.0  # rms / max = 1/16
    y = spiky.requires_grad_(True)
    (grad,) = torch.autograd.grad(zo(y, params.float()).sum(), y)
    assert est.stats()["step_size_fallbacks"] == 1 and torch.equal(grad, torch.ones_like(grad))


def test_periodic_colouring_separates_equal_colours_across_the_wrap():
    from sciml_zoo.estimators.banded import _colour_of

    for n in range(1, 40):
        for r in range(0, 5):
            colours, count = _colour_of(n, r, True)
            assert len(colours) == n and max(colours) == count - 1
            for a in range(n):
                for b in range(a + 1, n):
                    if colours[a] == colours[b]:
                        assert min(b - a, n - (b - a)) >= 2 * r + 1, (n, r, a, b)
            if 2 * r + 1 <= n:
                assert count == -(-n // (n // (2 * r + 1)))  # ceil(n / m): the fewest possible
