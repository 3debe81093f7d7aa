"""``diagnose`` on a black box: fit residuals and agreement, without a true gradient."""

from __future__ import annotations

import pytest
import torch

from sciml_zoo.config import ModelConfig
from sciml_zoo.data.loading import load_dataset, source_solver
from sciml_zoo.diagnostics import (
    build_estimators,
    compare_gradients,
    fit_residual,
    format_diagnostics,
    parse_estimator_options,
)
from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import Banded, Identity, Stencil
from sciml_zoo.rollout import corrected_rollout
from sciml_zoo.runs import build_model
from sciml_zoo.solver import Capabilities, SolverBase
from sciml_zoo.train.objective import WindowSampler, trajectory_loss


class BlackBox(SolverBase):
    """The toy solver with its differentiability hidden, as a closed binary would have it."""

    def __init__(self, inner: SolverBase) -> None:
        self.inner = inner
        self.name = "black-box-toy"
        self.capabilities = Capabilities(differentiable=False, batched=True)
        self._state_shape = inner.state_shape

    def step(self, state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner.step(state, params)


def test_option_syntax_and_validation_before_any_query():
    assert parse_estimator_options(["stencil.kernel_size=3", "banded.radius=1"]) == {
        "stencil": {"kernel_size": 3},
        "banded": {"radius": 1},
    }
    ests = build_estimators(["stencil", "banded"], {"stencil": {"kernel_size": 3}})
    assert ests == [Stencil(kernel_size=3), Banded()]
    with pytest.raises(ConfigError, match="kernel_size=4"):
        build_estimators(["stencil"], {"stencil": {"kernel_size": 4}})
    with pytest.raises(ConfigError, match="not among"):
        build_estimators(["identity"], {"stencil": {"kernel_size": 3}})
    with pytest.raises(ConfigError, match="NAME.KEY=VALUE"):
        parse_estimator_options(["kernel_size=3"])


def test_fit_residual_ranks_estimators_on_a_black_box():
    from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

    solver = BlackBox(ToyDiffusion(resolution=(10, 10)))
    params = torch.tensor([[0.05], [0.2]], dtype=torch.float64)
    state = torch.randn(2, 1, 10, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gen = torch.Generator
    identity, banded1, banded0 = (
        fit_residual(e, solver.step, state, params, mask=None, generator=gen().manual_seed(1))
        for e in (Identity(), Banded(radius=1), Banded(radius=0))
    )
    assert banded1 < 1e-6 < identity and banded0 > 1e-3, (identity, banded1, banded0)


def test_compare_gradients_without_a_true_gradient(toy_dataset):
    data = load_dataset(toy_dataset)
    solver = BlackBox(source_solver(data))
    model = build_model(ModelConfig(width=4, kernel_size=3), data, seed=0)
    windows = WindowSampler(data.train.states, data.train.params, steps=2).sample(2, torch.Generator().manual_seed(0))
    ests = build_estimators(["identity", "banded", "auto"], {"banded": {"radius": 1}})
    rows, fo_steps = compare_gradients(model, solver, windows, ests, unroll=2)
    assert fo_steps is None and all(r.cosine is None and r.relative_error is None for r in rows)
    residual = {r.label: r.fit_residual for r in rows}
    assert residual["banded(radius=1)"] < 1e-3 < residual["identity"], residual
    table = format_diagnostics([rows], fo_steps)
    assert "Pairwise cosine" in table and "FO-SOL" not in table
    agree = torch.nn.functional.cosine_similarity(rows[1].gradient, rows[2].gradient, dim=0)
    assert agree > 0.999  # banded and auto (dense here) agree


def test_cosine_against_fo_sol_is_measured_against_backpropagation(toy_dataset):
    """On a differentiable solver, each row's cosine is its gradient's against plain autograd's SOL gradient."""
    data = load_dataset(toy_dataset)
    solver = source_solver(data)
    model = build_model(ModelConfig(width=4, kernel_size=3), data, seed=0)
    windows = WindowSampler(data.train.states, data.train.params, steps=2).sample(2, torch.Generator().manual_seed(0))
    ests = build_estimators(["weight-rge", "identity", "banded"], {"banded": {"radius": 1}})
    rows, fo_steps = compare_gradients(model, solver, windows, ests, unroll=2)
    assert fo_steps == 2 * 2
    model.zero_grad(set_to_none=True)
    predicted = corrected_rollout(solver.step, model, windows.initial, windows.params, 2)
    trajectory_loss(predicted, windows.targets, model.norm.state_std, model.mask).backward()
    truth = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    for row in rows:
        expected = torch.nn.functional.cosine_similarity(row.gradient, truth, dim=0)
        assert row.cosine == pytest.approx(float(expected), abs=1e-5), row.label
        assert row.relative_error == pytest.approx(
            float((row.gradient - truth).norm() / truth.norm()), rel=1e-4, abs=1e-5
        )
    cosine = {r.label: r.cosine for r in rows}
    assert cosine["banded(radius=1)"] > 0.9999  # the toy's Jacobian is banded with radius 1: exact
    assert cosine["weight-rge"] < 0.9  # a few random weight directions: a rough estimate
    table = format_diagnostics([rows], fo_steps)
    assert "| FO-SOL (backprop) | 1.000 |" in table
