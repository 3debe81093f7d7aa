"""The held-out check's running statistics: the relative error and the shrink factor from measured slopes."""

from __future__ import annotations

import math

import pytest
import torch

from sciml_zoo.estimators import Emulator
from sciml_zoo.estimators.base import merge_stats
from sciml_zoo.estimators.held_out import running_residual, shrink_factor, slopes, update_shrink


def _state() -> dict[str, float]:
    return {"check_norm": 0.0, "check_error": 0.0, "shrink_num": 0.0, "shrink_den": 0.0}


@pytest.fixture
def setup() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    truth = torch.randn(3, 2, 8, 8, generator=gen)  # J^T v
    r = torch.randn(3, 5, 2, 8, 8, generator=gen)
    return truth, r, slopes(truth, r)


def test_slopes_are_the_inner_products_per_member_and_direction(setup):
    truth, r, s = setup
    assert s.shape == (3, 5) and s.dtype == torch.float64
    assert math.isclose(float(s[1, 3]), float((truth[1] * r[1, 3]).sum()), rel_tol=1e-5)


def test_the_residual_is_zero_for_the_truth_and_one_for_zero(setup):
    truth, r, s = setup
    state = _state()
    state["check_norm"] = float(s.pow(2).sum())
    assert running_residual(state, "check_error", s, slopes(truth, r), 0.5) == 0.0
    state["check_error"] = 0.0
    assert math.isclose(running_residual(state, "check_error", s, slopes(torch.zeros_like(truth), r), 0.0), 1.0)
    assert math.isnan(running_residual(_state(), "check_error", s, s, 0.5))  # no signal yet


@pytest.mark.parametrize(("scale", "factor"), [(2.0, 0.5), (1.0, 1.0), (0.5, 1.0), (-1.0, 0.0)])
def test_the_shrink_factor_is_the_least_squares_multiple_clipped_to_0_1(setup, scale, factor):
    truth, r, s = setup
    state = _state()
    assert shrink_factor(state) == 0.0  # before any check: the fallback
    update_shrink(state, s, r, scale * truth, torch.zeros_like(truth), 0.5)
    assert math.isclose(shrink_factor(state), factor, rel_tol=1e-6)


def test_the_shrink_factor_moves_from_the_fallback_not_from_zero(setup):
    """With an identity fallback ``f = v``, the factor ``a`` of ``f + a (g - f)`` that lands on the truth."""
    truth, r, s = setup
    v = torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    state = _state()
    update_shrink(state, s, r, v + 2.0 * (truth - v), v, 0.0)
    assert math.isclose(shrink_factor(state), 0.5, rel_tol=1e-6)
    update_shrink(state, s, r, torch.full_like(v, math.nan), v, 0.0)  # a non-finite estimate is not counted
    assert math.isclose(shrink_factor(state), 0.5, rel_tol=1e-6)


def test_the_shrink_factor_is_merged_as_a_level_not_a_count():
    """Over curriculum stages and seeds (log.csv, the tables) counts add up; the factor stays in [0, 1]."""
    out = merge_stats({}, Emulator().stats() | {"shrink_factor": 0.6, "checks": 2})
    merge_stats(out, {"shrink_factor": 0.8, "checks": 3})
    assert out["shrink_factor"] == 0.8 and out["checks"] == 5
