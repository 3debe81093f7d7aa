"""The adapter protocol: black-box guarantee, state validation, step counting."""

from __future__ import annotations

import pytest
import torch

from sciml_zoo import SolverError, StepCounter, black_box, check_state, counting, differentiable
from sciml_zoo.rollout import corrected_rollout
from sciml_zoo.solver import block_average, spatial_dims
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion


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


@pytest.mark.parametrize("resolution", [(12,), (6, 4, 8)])
def test_1d_and_3d_states_pass_the_same_guarantees(resolution):
    solver = ToyDiffusion(resolution=resolution)
    params = torch.tensor([[0.01], [0.02]])
    state = solver.initial_state(params, seed=0)
    assert spatial_dims(state) == len(resolution) and spatial_dims(solver.valid_mask) == len(resolution)
    out = differentiable(solver)(state.requires_grad_(True), params)
    assert torch.equal(out.detach(), black_box(solver)(state, params))
    assert black_box(solver)(state, params).grad_fn is None
    with pytest.raises(SolverError, match="shape"):
        check_state(out[..., :-1], solver.state_shape, who="toy.step")


def test_spatial_dims_refuses_states_without_or_with_too_many_axes():
    assert spatial_dims(torch.zeros(2, 1, 5)) == 1 and spatial_dims(torch.zeros(1, 5, dtype=torch.bool)) == 1
    with pytest.raises(ValueError, match="1 to 3 spatial axes"):
        spatial_dims(torch.zeros(2, 1))
    with pytest.raises(ValueError, match="1 to 3 spatial axes"):
        spatial_dims(torch.zeros(2, 1, 2, 2, 2, 2))


@pytest.mark.parametrize("shape", [(2, 3, 8), (2, 3, 8, 6), (2, 3, 8, 6, 4)])
def test_block_average_in_any_dimension_keeps_block_means(shape):
    state = torch.randn(shape)
    small = block_average(state, 2)
    assert small.shape == (*shape[:2], *(n // 2 for n in shape[2:]))
    torch.testing.assert_close(small.mean(), state.mean())
    torch.testing.assert_close(
        small[(0, 0) + (0,) * (len(shape) - 2)], state[(0, 0) + (slice(0, 2),) * (len(shape) - 2)].mean()
    )
    with pytest.raises(ValueError, match="divide"):
        block_average(state, 3)


def test_default_restrict_block_averages_and_refuses_non_integer_ratios():
    fine = ToyDiffusion(resolution=(8, 4))  # state (B, 1, 4, 8): y then x
    state = fine.initial_state(torch.ones(1, 1), seed=0)
    torch.testing.assert_close(fine.restrict(state, (4, 2)), block_average(state, 2))
    torch.testing.assert_close(fine.restrict(state, (2, 4)), block_average(state, (1, 4)))  # x by 4 only
    with pytest.raises(ValueError, match="override restrict"):
        fine.restrict(state, (3, 2))


@pytest.mark.parametrize("spatial", [(8,), (4, 8), (2, 4, 8)])
def test_mae_reduces_over_channels_and_space_from_the_mask(spatial):
    from sciml_zoo.metrics import mae

    pred, ref = torch.zeros(5, 4, 2, *spatial), torch.ones(5, 4, 2, *spatial)
    mask = torch.ones(2, *spatial, dtype=torch.bool)
    mask[1] = False
    ref[:, :, 1] = 100.0  # ignored: outside the mask
    assert mae(pred, ref, mask).shape == (5, 4)
    torch.testing.assert_close(mae(pred, ref, mask), torch.full((5, 4), 1.0))


@pytest.mark.parametrize("spatial", [(16,), (6, 8), (4, 6, 8)])
def test_field_plots_work_in_any_dimension(tmp_path, spatial):
    from sciml_zoo.plots import field_name, plot_fields, plot_space_time

    fields = {"reference": torch.randn(1, *spatial), "SRC": torch.randn(1, *spatial)}
    plot_fields(fields, tmp_path / "f.png", title=f"{field_name(fields['SRC'])} at step 3")
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert field_name(torch.zeros(2, 6, 8)) == "vorticity" and field_name(torch.zeros(2, 16)) == "channel 0"
    if len(spatial) == 1:
        plot_space_time({"reference": torch.randn(10, 1, 16), "SRC": torch.randn(10, 1, 16)}, tmp_path / "st.png")
        assert (tmp_path / "st.png").stat().st_size > 1000
