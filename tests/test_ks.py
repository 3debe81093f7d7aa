"""Kuramoto–Sivashinsky scene: ETDRK4 accuracy, chaos, bounded energy, a real coarse error, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from sciml_zoo.solver import black_box, differentiable
from sciml_zoo.testing import check_adapter
from sciml_zoo_solvers.ks import etdrk4_coefficients, make_ks_solver

L22 = 22 * math.pi
NO_PARAMS = torch.zeros(2, 0)


def _burned_in(solver, frames: int = 100, seed: int = 0) -> torch.Tensor:
    state = solver.initial_state(NO_PARAMS, seed=seed)
    with torch.no_grad():
        for _ in range(frames):
            state = solver.step(state, NO_PARAMS)
    return state


@pytest.mark.parametrize(("resolution", "substeps"), [((48,), 1), ((128,), 10)])
def test_check_adapter_passes_at_both_resolutions(resolution, substeps) -> None:
    report = check_adapter(make_ks_solver(resolution=resolution, substeps=substeps))
    assert report.ok and "capabilities: differentiable=True is honest" in report.passed


def test_check_adapter_passes_with_the_domain_length_as_a_parameter() -> None:
    solver = make_ks_solver(resolution=(48,), length_param=True)
    assert solver.param_names == ("length",)
    assert check_adapter(solver, params=torch.tensor([[L22], [20 * math.pi]])).ok  # batch of two lengths


def test_per_member_length_equals_single_runs_and_is_cached() -> None:
    solver = make_ks_solver(resolution=(48,), length_param=True)
    lengths = torch.tensor([[L22], [18 * math.pi], [L22]])
    state = solver.initial_state(lengths, seed=3)
    together = solver.step(state, lengths)
    for i in range(3):
        torch.testing.assert_close(together[i : i + 1], solver.step(state[i : i + 1], lengths[i : i + 1]))
    assert len(solver._cache) == 2  # one set of coefficients per distinct length and dtype
    fixed = make_ks_solver(resolution=(48,))
    torch.testing.assert_close(fixed.step(state[:1], torch.zeros(1, 0)), together[:1])


def test_etdrk4_is_fourth_order() -> None:
    """Error against a fine-step run shrinks ~16x per halving of h (Kassam & Trefethen 2005, Fig. 3)."""
    params = torch.zeros(1, 0)
    start = make_ks_solver(resolution=(64,), length=32 * math.pi).initial_state(params, seed=1).double()

    def run(substeps: int) -> torch.Tensor:
        solver = make_ks_solver(resolution=(64,), length=32 * math.pi, dt=4.0, substeps=substeps)
        return solver.step(start, params)

    exact = run(256)
    errors = [float((run(s) - exact).abs().max()) for s in (4, 8, 16)]
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(10 < r < 24 for r in ratios), (errors, ratios)


def test_contour_coefficients_match_the_direct_formulas_away_from_zero() -> None:
    c = etdrk4_coefficients(16, 0.5, L22, dealias=False)
    z = 0.5 * (torch.arange(9, dtype=torch.float64) * 2 * math.pi / L22) ** 2
    z = z - 0.5 * (torch.arange(9, dtype=torch.float64) * 2 * math.pi / L22) ** 4
    far = z.abs() > 0.5  # the closed forms cancel catastrophically near zero
    h = 0.5
    f1 = h * (-4 - z + torch.exp(z) * (4 - 3 * z + z**2)) / z**3
    q = h * (torch.exp(z / 2) - 1) / z
    torch.testing.assert_close(c["f1"][far], f1[far], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c["Q"][far], q[far], rtol=1e-10, atol=1e-12)
    assert c["g"][-1] == 0  # no derivative of the Nyquist mode


def test_chaotic_nearby_states_separate_exponentially() -> None:
    solver = make_ks_solver(resolution=(48,))
    state = _burned_in(solver).double()
    delta = 1e-7 * torch.randn(state.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, b = state, state + delta
    separation = []
    with torch.no_grad():
        for frame in range(1, 121):
            a, b = solver.step(a, NO_PARAMS), solver.step(b, NO_PARAMS)
            if frame % 40 == 0:
                separation.append(float(((a - b).norm(dim=-1) / delta.norm(dim=-1)).min()))
    # 20 time units per entry: growth by well over an order of magnitude each time
    assert separation[0] > 3 and separation[1] > 10 * separation[0] / 3 and separation[2] > 300, separation


def test_energy_stays_bounded_and_the_state_stays_chaotic() -> None:
    solver = make_ks_solver(resolution=(48,))
    state = _burned_in(solver)
    energy = []
    with torch.no_grad():
        for _ in range(1000):  # 500 time units
            state = solver.step(state, NO_PARAMS)
            energy.append(float(state.pow(2).mean()))
    assert 0.5 < min(energy) and max(energy) < 5.0, (min(energy), max(energy))
    assert float(state.std()) > 0.5  # not decayed to a steady state


def test_coarse_error_against_the_restricted_reference_is_real_and_grows() -> None:
    fine = make_ks_solver(resolution=(128,), substeps=10)
    coarse = make_ks_solver(resolution=(48,))
    state = _burned_in(fine)
    src = fine.restrict(state, (48,))
    scale = float(src.abs().mean())
    errors = []
    with torch.no_grad():
        for _ in range(40):
            state, src = fine.step(state, NO_PARAMS), coarse.step(src, NO_PARAMS)
            errors.append(float((src - fine.restrict(state, (48,))).abs().mean()))
    assert errors[0] > 0.005 * scale  # even one step differs
    assert errors[-1] > 0.1 * scale and errors[-1] > 4 * errors[0], errors  # and the error grows
    assert errors[-1] < 3 * scale  # but stays bounded (both runs remain on the attractor)


def test_restrict_is_spectral_truncation() -> None:
    fine = make_ks_solver(resolution=(128,), substeps=10)
    x = torch.arange(128, dtype=torch.float64) / 128
    u = (torch.cos(2 * math.pi * 3 * x) + 0.5 * torch.sin(2 * math.pi * 10 * x + 1.0)).view(1, 1, -1)
    coarse = fine.restrict(u, (48,))
    xc = torch.arange(48, dtype=torch.float64) / 48
    want = torch.cos(2 * math.pi * 3 * xc) + 0.5 * torch.sin(2 * math.pi * 10 * xc + 1.0)
    torch.testing.assert_close(coarse.view(-1), want)  # a band-limited field is sampled exactly
    high = torch.cos(2 * math.pi * 30 * x).view(1, 1, -1)  # above the coarse grid's modes
    assert float(fine.restrict(high, (48,)).abs().max()) < 1e-12
    torch.testing.assert_close(fine.restrict(u, (128,)), u)  # no Nyquist content: identity
    with pytest.raises(ValueError, match="even"):
        fine.restrict(u, (47,))


def test_black_box_and_differentiable_modes_agree() -> None:
    solver = make_ks_solver(resolution=(48,))
    state = _burned_in(solver, frames=20)
    assert torch.equal(black_box(solver)(state, NO_PARAMS), differentiable(solver)(state, NO_PARAMS).detach())


def test_gradient_matches_float64_finite_differences() -> None:
    solver = make_ks_solver(resolution=(48,), substeps=2)
    state = _burned_in(solver, frames=20)[:1].double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: solver.step(s, torch.zeros(1, 0)), (state,), eps=1e-6, atol=1e-6)


def test_initial_states_differ_per_simulation_and_are_reproducible() -> None:
    solver = make_ks_solver(resolution=(48,))
    a = solver.initial_state(torch.zeros(6, 0), seed=0)
    assert torch.equal(a, solver.initial_state(torch.zeros(6, 0), seed=0))
    assert all(not torch.allclose(a[i], a[j]) for i in range(6) for j in range(i))
    assert torch.equal(a[:2], solver.initial_state(NO_PARAMS, seed=0))  # member i: the i-th draw


def test_32_points_blow_up_so_the_recipes_use_48() -> None:
    """32 points at L = 22 pi are under-resolved (the coarse run blows up); the recipes use 48."""
    fine = make_ks_solver(resolution=(128,), substeps=10)
    state = fine.restrict(_burned_in(fine), (32,))
    coarse = make_ks_solver(resolution=(32,))
    with torch.no_grad():
        for _ in range(30):
            state = coarse.step(state, NO_PARAMS)
    assert not bool(torch.isfinite(state).all()) or float(state.abs().max()) > 1e3


def test_bad_options_name_the_fix() -> None:
    with pytest.raises(ValueError, match="even and >= 8"):
        make_ks_solver(resolution=(48, 48))
    with pytest.raises(ValueError, match="substeps >= 1"):
        make_ks_solver(resolution=(48,), substeps=0)
    with pytest.raises(ValueError, match=r"\(B, 1\) domain lengths"):
        make_ks_solver(length_param=True).step(torch.zeros(2, 1, 48), torch.zeros(2, 0))


@pytest.mark.parametrize("preset", ["ks", "ks_tiny"])
def test_presets_use_the_probes_1473_weight_periodic_1d_cnn(preset: str) -> None:
    from sciml_zoo.config import ModelConfig
    from sciml_zoo.config_io import from_dict, load_toml
    from sciml_zoo.experiment import PRESET_DIR, load_recipe
    from sciml_zoo.nn import build_body

    raw = load_toml(PRESET_DIR / f"{preset}.toml")
    model = from_dict(ModelConfig, raw["model"], where="[model]")
    recipe = load_recipe(raw["dataset"])
    assert recipe.solver == "ks" and recipe.param_names == () and len(recipe.source_resolution) == 1
    body = build_body(
        model.arch,
        1,
        1,
        dim=1,
        width=model.width,
        kernel_size=model.kernel_size,
        depth=model.depth,
        activation=model.activation,
        padding_mode=model.padding,
    )
    assert sum(p.numel() for p in body.parameters()) == 1_473
    assert raw["train"]["scheduler_options"]["T_max"] == raw["train"]["iterations"]
    if preset == "ks":
        assert (raw["train"]["unroll"], raw["train"]["batch_size"], raw["eval_steps"]) == (16, 16, 40)
        assert recipe.num_frames >= 16 + 1 and recipe.num_frames > raw["eval_steps"]
        assert len(recipe.train_params) == 16 and len(recipe.test_params) == 6


def test_ks_preset_trains_every_solver_space_estimator_and_deepzeros_row() -> None:
    """The KS table compares every estimator that acts on the solver step, plus DeepZero's sparse CGE."""
    from sciml_zoo.estimators import Estimator
    from sciml_zoo.estimators.base import WeightSpaceEstimator
    from sciml_zoo.estimators.registry import ESTIMATORS
    from sciml_zoo.experiment import load_experiment

    exp = load_experiment("ks")
    used = {c.method: set() for c in exp.methods.values()}
    for c in exp.methods.values():
        est = c.estimator
        used[c.method].add(est.name if isinstance(est, Estimator) else est)
    solver_space = {n for n, cls in ESTIMATORS.items() if not issubclass(cls, WeightSpaceEstimator)}
    assert {"non", "fo-sol"} <= set(used)
    assert solver_space | {"sparse-cge"} <= used["zo-sol"]
