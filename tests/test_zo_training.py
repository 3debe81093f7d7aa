"""ZO-SOL training: the batched multi-query loss is exact, and training through a
black-box solver lowers the loss with no autograd ever reaching the solver."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.func import functional_call

from sciml_zoo.config import ModelConfig, TrainConfig
from sciml_zoo.data.loading import load_dataset, source_solver
from sciml_zoo.estimators import Auto, SolverSpaceEstimator
from sciml_zoo.rollout import corrected_rollout
from sciml_zoo.runs import RunConfig, build_model
from sciml_zoo.solver import StepCounter, black_box, counting
from sciml_zoo.train.gradients import make_gradient
from sciml_zoo.train.loop import train
from sciml_zoo.train.objective import WindowSampler, make_batched_sol_loss, trajectory_loss

SMALL = ModelConfig(width=6, kernel_size=3)


@pytest.fixture()
def setup(toy_dataset):
    data = load_dataset(toy_dataset)
    model = build_model(SMALL, data, seed=0)
    solver = source_solver(data)
    windows = WindowSampler(data.train.states, data.train.params, steps=3).sample(2, torch.Generator().manual_seed(0))
    return model, solver, windows


def _plain_loss(model, solver, windows, params):
    def corr(state, p):
        return functional_call(model, params, (state, p), strict=False)

    pred = corrected_rollout(black_box(solver), corr, windows.initial, windows.params, 3)
    return trajectory_loss(pred, windows.targets, model.norm.state_std, model.mask)


@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("names", [["body.0.weight", "body.4.bias"], ["body.4.weight"], []])
def test_batched_loss_equals_one_rollout_per_query(setup, names, reuse):
    """Holds with and without feature reuse (perturbing only a late layer reuses
    the early activations and the first solver call)."""
    model, solver, windows = setup
    gen = torch.Generator().manual_seed(1)
    named = dict(model.named_parameters())
    perturbed = {n: named[n].detach()[None] + 0.05 * torch.randn(3, *named[n].shape, generator=gen) for n in names}
    counter = StepCounter()
    batched = make_batched_sol_loss(model, counting(black_box(solver), counter), windows, steps=3, reuse=reuse)
    assert counter.sample_steps == 2  # the shared first solver call, paid once per batch
    losses = batched(perturbed)
    q = 3 if names else 1
    assert losses.shape == (q,)
    # then (n-1) calls of Q*B rows, plus the first step again per query without reuse
    assert counter.sample_steps == 2 + 2 * q * 2 + (0 if reuse else q * 2)
    for i in range(q):
        expected = _plain_loss(model, solver, windows, {n: v[i] for n, v in perturbed.items()})
        torch.testing.assert_close(losses[i], expected, rtol=1e-5, atol=1e-7)


def _assert_black_box(monkeypatch):
    from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

    original = ToyDiffusion.step

    def guarded(self, state, params):
        assert not torch.is_grad_enabled() and not state.requires_grad, "autograd reached the solver"
        return original(self, state, params)

    monkeypatch.setattr(ToyDiffusion, "step", guarded)


def _through_the_solver(toy_dataset, cfg: TrainConfig) -> tuple[float, float]:
    """The part of ``cfg``'s first gradient that flows back through the solver, against FO-SOL's.

    Both are measured from stop-gradient's (the network's own terms only), at the
    run's initial weights; returns their cosine and the ratio of their norms.
    """
    data = load_dataset(toy_dataset)
    solver = source_solver(data)
    windows = WindowSampler(data.train.states, data.train.params, steps=cfg.unroll).sample(
        cfg.batch_size, torch.Generator().manual_seed(5)
    )
    grads = []
    for c in (TrainConfig(method="fo-sol", unroll=cfg.unroll), cfg, replace(cfg, estimator="stop-gradient")):
        model = build_model(SMALL, data, seed=cfg.seed)
        make_gradient(c, model, solver, StepCounter())(windows, torch.Generator().manual_seed(6))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    truth, estimate, stop = grads
    # what flows back through the solver (J^T v), without the network's own terms that stop-gradient keeps
    through, true_through = estimate - stop, truth - stop
    cosine = float(torch.nn.functional.cosine_similarity(through, true_through, dim=0))
    return cosine, float(through.norm() / true_through.norm())


@pytest.mark.parametrize(
    ("estimator", "options"),
    [
        ("identity", {}),
        ("stencil", {}),
        ("weight-rge", {"num_directions": 16, "difference": "central"}),
        ("sparse-cge", {"sparsity": 0.5, "grasp_directions": 16}),
        (None, {}),  # the default: auto
        ("banded", {"radius": 1}),
    ],
)
def test_zo_sol_lowers_the_loss_through_a_black_box_solver(tmp_path, toy_dataset, monkeypatch, estimator, options):
    cfg = TrainConfig(
        method="zo-sol",
        estimator=estimator,
        estimator_options=options,
        unroll=3,
        iterations=30,
        batch_size=2,
        lr=3e-3,
        checkpoint_every=30,
        seed=0,
        curriculum=False,  # a fixed unroll: first and last losses measure the same objective
    )
    if isinstance(cfg.estimator, SolverSpaceEstimator):
        # the network's own terms lower the loss even if the solver's J^T v were zero (stop-gradient):
        # what the estimate sends back through the solver must be FO-SOL's, in direction and size
        cosine, ratio = _through_the_solver(toy_dataset, cfg)
        assert cosine > 0.5 and 0.2 < ratio < 5, (cosine, ratio)
    _assert_black_box(monkeypatch)
    summary = train(RunConfig(str(toy_dataset), SMALL, cfg), tmp_path, progress=False)
    losses = [float(r.split(",")[1]) for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert sum(losses[-6:]) / 6 < 0.8 * sum(losses[:6]) / 6
    assert summary["train_solver_steps"] >= 30 * 2 * 3  # at least the unrolled steps were paid


def test_auto_safeguard_falls_back_during_training_and_counts(setup):
    """A model forced to fail its check (radius 0, a tolerance no fit meets) trains on the identity fallback."""
    model, solver, windows = setup
    est = Auto(max_dense=0, radius=0, max_residual=1e-12, check_every=1)
    cfg = TrainConfig(method="zo-sol", estimator=est, unroll=3)
    gradient = make_gradient(cfg, model, solver, StepCounter())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(20):
        opt.zero_grad(set_to_none=True)
        losses.append(float(gradient(windows, gen)))
        opt.step()
    stats = gradient.stats()
    # the first solver step sees reference states (no gradient needed): 2 wrapped steps per unroll of 3
    assert stats["fallback_steps"] == stats["checks"] == 20 * 2 and stats["mode"] == "banded", stats
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert est.stats()["checks"] == 0  # the config's object holds no run state
    state = gradient.state_dict()
    assert state["estimator"]["fallback_members"] == 20 * 2 * 2
