"""Weight-space ZO estimators (RGE, CGE, sparse CGE, ZO-GraSP) on analytic losses."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import SparseCGE, make_estimator
from sciml_zoo.estimators import WeightCGE as CGE
from sciml_zoo.estimators import WeightRGE as RGE
from sciml_zoo.estimators.grasp import grasp_scores, zo_grasp_ratios
from sciml_zoo.estimators.subsets import coordinate_subsets

torch.set_num_threads(1)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1)).double()


class Quadratic(nn.Module):
    """f(θ) = ½ (θ − c)ᵀ A (θ − c) over θ = [w.flatten(), b]; ∇f = A (θ − c)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(2, 3, generator=g, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(2, generator=g, dtype=torch.float64))
        m = torch.randn(8, 8, generator=g, dtype=torch.float64)
        self.register_buffer("A", m @ m.T / 8 + torch.eye(8, dtype=torch.float64))
        self.register_buffer("c", torch.randn(8, generator=g, dtype=torch.float64))

    def forward(self) -> Tensor:
        r = torch.cat([self.w.reshape(-1), self.b]) - self.c
        return 0.5 * r @ self.A @ r


def make_loss(model: nn.Module, *args: Tensor, log: list | None = None):
    """A BatchedLoss via functional_call + vmap over the query dimension."""
    target = torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None]

    def loss_at(params: dict[str, Tensor]) -> Tensor:
        out = functional_call(model, params, args)
        return out if not args else ((out - target) ** 2).mean()

    def batched_loss(perturbed: dict[str, Tensor]) -> Tensor:
        if log is not None:
            log.append({n: tuple(v.shape) for n, v in perturbed.items()})
        base = {n: p.detach() for n, p in model.named_parameters()}
        if not perturbed:
            return loss_at(base)[None]
        names = list(perturbed)
        return torch.vmap(lambda *v: loss_at({**base, **dict(zip(names, v, strict=True))}))(*perturbed.values())

    return batched_loss


def mlp_problem():
    model = mlp()
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return model, make_loss(model, x), x


def true_grad(model: nn.Module, *args: Tensor) -> Tensor:
    model.zero_grad()
    out = model(*args)
    target = torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None]
    (out if not args else ((out - target) ** 2).mean()).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad()
    return g


def flat_grad(model: nn.Module) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rge_error_shrinks_with_directions():
    model, loss, x = mlp_problem()
    g = true_grad(model, x)
    errs = []
    for q in (4, 64, 512):
        est = RGE(num_directions=q, mu=1e-5, difference="central", query_batch=64)
        e = [rel_err((est.estimate(model, loss, generator=gen(s)), flat_grad(model))[1], g) for s in range(4)]
        errs.append(sum(e) / len(e))
        assert est.queries_last == 2 * q + 1
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.35 < errs[0], errs  # ~sqrt(d/q) with d = 22


def test_forward_rge_matches_gradient_at_fixed_seed():
    model, loss, x = mlp_problem()
    est = RGE(num_directions=2000, mu=1e-5, query_batch=500)
    f0 = est.estimate(model, loss, generator=gen(0))
    cos = torch.nn.functional.cosine_similarity(flat_grad(model), true_grad(model, x), dim=0)
    # θ once, 2000 directions, plus one paired baseline in each of 5 calls of <= 499 directions
    assert cos > 0.9 and est.queries_last == 1 + 2000 + 5
    assert torch.allclose(f0, loss({})[0]) and f0.dim() == 0


def test_sparse_cge_error_shrinks_with_density_and_cge_with_mu():
    model, loss, x = mlp_problem()
    g = true_grad(model, x)
    errs = []
    for sparsity in (0.9, 0.5, 0.0):
        est = SparseCGE(ratios=sparsity, mu=1e-6)
        e = [rel_err((est.estimate(model, loss, generator=gen(s)), flat_grad(model))[1], g) for s in range(5)]
        errs.append(sum(e) / len(e))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-4, errs
    cge_errs = []
    for mu in (1e-1, 1e-2, 1e-3):
        CGE(mu=mu).estimate(model, loss, generator=gen(0))
        cge_errs.append(rel_err(flat_grad(model), g))
    assert cge_errs[0] > cge_errs[1] > cge_errs[2], cge_errs


def test_central_cge_is_exact_on_a_quadratic():
    model = Quadratic()
    exact, log = true_grad(model), []
    est = CGE(mu=1e-2, difference="central", query_batch=4)
    f0 = est.estimate(model, make_loss(model, log=log), generator=gen(0))
    assert rel_err(flat_grad(model), exact) < 1e-8
    assert torch.allclose(f0, model())
    assert est.queries_last == 1 + 2 * 8
    # one tensor per call (feature reuse), at most query_batch settings, θ query first
    assert log[0] == {} and all(len(c) == 1 and next(iter(c.values()))[0] <= 4 for c in log[1:])


def test_antithetic_rge_is_unbiased_on_a_quadratic():
    model = Quadratic()
    loss = make_loss(model)
    est = RGE(num_directions=40, mu=0.5, difference="central")  # large mu: exact for quadratics
    total = torch.zeros(8, dtype=torch.float64)
    for seed in range(200):
        est.estimate(model, loss, generator=gen(seed))
        total += flat_grad(model)
    mean, exact = total / 200, true_grad(model)
    assert rel_err(mean, exact) < 0.1
    # a single estimate is far noisier than the mean of 200
    est.estimate(model, loss, generator=gen(0))
    assert rel_err(flat_grad(model), exact) > 2 * rel_err(mean, exact)


ESTIMATORS = [
    lambda: RGE(num_directions=7, query_batch=3),
    lambda: RGE(num_directions=7, difference="central", query_batch=3),
    lambda: CGE(query_batch=5),
    lambda: SparseCGE(ratios=0.5, redraw_every=5, query_batch=5),
]


@pytest.mark.parametrize("make", ESTIMATORS)
def test_weights_unchanged_and_grads_overwritten(make):
    model, _, x = mlp_problem()
    model[0].bias.requires_grad_(False)  # frozen: never queried, no grad
    log: list = []
    loss = make_loss(model, x, log=log)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e3) if p.requires_grad else None
    est = make()
    est.estimate(model, loss, generator=gen(3))
    first = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert est.queries_last == sum(next(iter(c.values()), (1,))[0] for c in log)
    est.estimate(model, loss, generator=gen(3))
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])
        if p.requires_grad:
            assert torch.equal(p.grad, first[n]) and p.grad.abs().max() < 100
    assert model[0].bias.grad is None
    assert all("0.bias" not in c and all(s[0] <= est.query_batch for s in c.values()) for c in log)


def test_zo_grasp_ratios_hit_target_and_find_the_dead_layer():
    class TwoLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.live = nn.Linear(4, 4).double()
            self.dead = nn.Linear(4, 4).double()  # multiplied by 0 in the loss

        def forward(self, x: Tensor) -> Tensor:
            return self.live(x).tanh().sum(1, keepdim=True) + 0.0 * self.dead(x).sum(1)[:, None]

    model = TwoLayer()
    x = torch.randn(8, 4, generator=gen(1), dtype=torch.float64)
    ratios = zo_grasp_ratios(model, make_loss(model, x), target_sparsity=0.5, mu=1e-3, generator=gen(0))
    assert set(ratios) == {n for n, _ in model.named_parameters()}
    assert all(0.0 <= r <= 1.0 for r in ratios.values())
    assert ratios["live.bias"] == ratios["dead.bias"] == 0.0
    weighted = (16 * ratios["live.weight"] + 16 * ratios["dead.weight"]) / 32
    assert weighted == pytest.approx(0.5, abs=1 / 32)
    assert ratios["dead.weight"] > ratios["live.weight"]


def test_zo_grasp_scores_match_autograd_grasp():
    """−θ ⊙ Hg from queries vs autograd (common random numbers make q = 192 enough)."""
    model, loss, x = mlp_problem()
    target = torch.linspace(-1, 1, 8, dtype=torch.float64)[:, None]
    weights = [model[0].weight, model[2].weight]
    grads = torch.autograd.grad(((model(x) - target) ** 2).mean(), weights, create_graph=True)
    hg = torch.autograd.grad(sum((g * g.detach()).sum() for g in grads), weights)
    exact = torch.cat([(-w * h).reshape(-1) for w, h in zip(weights, hg, strict=True)]).detach()
    scores = grasp_scores(model, loss, num_directions=192, mu=1e-4, generator=gen(0))
    assert list(scores) == ["0.weight", "2.weight"]
    zo = torch.cat([v.reshape(-1) for v in scores.values()])
    assert torch.nn.functional.cosine_similarity(zo, exact, dim=0) > 0.9


def test_sparse_cge_subsets_redraw_and_reproduce():
    model, loss, x = mlp_problem()
    ratios = {"0.weight": 0.8, "2.weight": 0.5, "0.bias": 0.9, "2.bias": 0.0}
    est = SparseCGE(ratios=ratios, redraw_every=3)
    drawn, g = [], gen(7)
    for _ in range(4):
        est.estimate(model, loss, generator=g)
        drawn.append({n: s.clone() for n, s in est.subsets.items()})
        for n, p in model.named_parameters():
            nonzero = p.grad.reshape(-1).nonzero().flatten()
            assert torch.equal(nonzero, est.subsets[n]), n
    assert len(drawn[0]["0.weight"]) == 3 and len(drawn[0]["2.weight"]) == 2
    assert len(drawn[0]["0.bias"]) == 3  # biases: always all coordinates
    # θ, the subset sizes (3 + 2 + 3 + 1), and one paired baseline per tensor (one call each)
    assert est.queries_last == 1 + (3 + 2 + 3 + 1) + 4
    assert all(torch.equal(drawn[i]["0.weight"], drawn[0]["0.weight"]) for i in (1, 2))
    assert not torch.equal(drawn[3]["0.weight"], drawn[0]["0.weight"])
    params = dict(model.named_parameters())
    again = coordinate_subsets(params, ratios, generator=gen(7))
    assert all(torch.equal(again[n], drawn[0][n]) for n in params)
    state = est.state_dict()
    resumed = SparseCGE(ratios=ratios, redraw_every=3)
    resumed.load_state_dict(state)
    resumed.estimate(model, loss, generator=gen(8))
    assert torch.equal(resumed.subsets["0.weight"], drawn[3]["0.weight"])  # call 5: no redraw


def test_bad_names_and_options_raise_config_error():
    with pytest.raises(ConfigError, match="weight-rge, weight-cge, sparse-cge"):
        make_estimator("rgee")
    with pytest.raises(ConfigError, match="num_direction.*valid options: .*num_directions"):
        make_estimator("weight-rge", {"num_direction": 4})
    # sparse-cge without ratios now computes ZO-GraSP ratios at `sparsity` (was: "needs option ratios")
    assert make_estimator("sparse-cge").ratios is None
    with pytest.raises(ConfigError, match="mu=-1.0 is invalid; use a number > 0"):
        make_estimator("weight-cge", {"mu": -1.0})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        SparseCGE(ratios={"0.weight": 1.5})
    model, loss, _ = mlp_problem()
    with pytest.raises(ConfigError, match="no sparsity ratio for parameter '2.weight'"):
        SparseCGE(ratios={"0.weight": 0.5}).estimate(model, loss, generator=gen(0))
    with pytest.raises(ConfigError, match="unknown parameter"):
        SparseCGE(ratios={"fc.weight": 0.5}).estimate(model, loss, generator=gen(0))
    est = make_estimator("sparse-cge", {"ratios": 0.9, "difference": "central"})
    assert isinstance(est, SparseCGE) and est.central and est.ratios == 0.9


def test_forward_differences_cancel_a_batch_dependent_solver_offset():
    """Batched solvers can couple the members of one call (PhiFlow's batched CG
    runs until every member converges), shifting every loss of a call by the same
    small amount. Forward differences evaluate their baseline in the same call, so
    that shift cancels; a baseline from another call would add shift/μ to every
    coordinate."""
    model = Quadratic()
    exact = make_loss(model)

    def coupled(perturbed: dict[str, Tensor]) -> Tensor:
        losses = exact(perturbed)
        return losses + 1e-4 * len(losses)  # depends on who else is in the call

    g = true_grad(model)
    CGE(mu=1e-6, query_batch=4).estimate(model, coupled, generator=gen(0))
    assert rel_err(flat_grad(model), g) < 1e-6


def test_sparse_cge_grasp_ratios_live_in_the_state_and_runs_are_deterministic():
    import json

    model, loss, _ = mlp_problem()
    before = torch.random.get_rng_state()
    grads, states = [], []
    for _ in range(2):
        est = SparseCGE(sparsity=0.5, grasp_directions=8)
        est.estimate(model, loss, generator=gen(4))
        grads.append(flat_grad(model))
        states.append(est.state_dict())
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(grads[0], grads[1])
    ratios = states[0]["ratios"]
    assert set(ratios) == {n for n, _ in model.named_parameters()} and ratios["0.bias"] == 0.0
    json.dumps({k: v for k, v in states[0].items() if k != "subsets"})
    assert all(isinstance(t, Tensor) for t in states[0]["subsets"].values())
    resumed = SparseCGE(sparsity=0.5, grasp_directions=8)
    resumed.load_state_dict(states[0])
    resumed.estimate(model, loss, generator=gen(5))
    assert resumed.state["ratios"] == ratios  # no second ZO-GraSP
    assert resumed.queries_last == 1 + sum(len(s) for s in resumed.subsets.values()) + 4
