"""Weight-space zeroth-order gradient estimators (DeepZero, Chen et al., ICLR 2024).

Each estimator writes ``.grad`` on every trainable parameter of a network from
loss *queries* only, so the loss may pass through a black-box solver. Queries
are functional: the network's parameters are never modified; every query is
exactly ``θ + μ·u`` handed to a :data:`BatchedLoss` as stacked full values.

With ``f`` the loss and ``θ ∈ R^d``:

* :class:`WeightRGE` (``weight-rge``), Gaussian ``u_i`` over all parameters
  jointly: ``ĝ = (1/q) Σ_i [(f(θ+μu_i) − f(θ))/μ] u_i``, or with antithetic
  pairs ``[(f(θ+μu_i) − f(θ−μu_i))/(2μ)] u_i`` (Nesterov & Spokoiny 2017).
  Unlike DeepZero's own code this keeps the scale: no normalisation of ``u``.
* :class:`WeightCGE` (``weight-cge``), one query per coordinate:
  ``ĝ_j = (f(θ+μe_j) − f(θ))/μ`` (DeepZero Eq. 3, μ = 5e-3, forward differences).
* :class:`~sciml_zoo.estimators.sparse_cge.SparseCGE` (``sparse-cge``): CGE on
  random per-layer coordinate subsets at ZO-GraSP ratios.

Coordinate queries are grouped by parameter tensor so a loss with DeepZero's
feature reuse can skip the layers before the perturbed one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sciml_zoo.estimators.base import WeightSpaceEstimator

__all__ = ["BatchedLoss", "WeightCGE", "WeightRGE", "trainable_parameters", "write_grads"]

BatchedLoss = Callable[[dict[str, Tensor]], Tensor]
"""``batched_loss(perturbed) -> (Q,) losses``; ``perturbed`` maps a subset of
parameter names to stacked full values ``(Q, *param.shape)``; ``{}`` evaluates
the current θ and returns shape ``(1,)``."""


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Map name -> parameter for every parameter with ``requires_grad``."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def write_grads(params: Mapping[str, Tensor], grads: Mapping[str, Tensor]) -> None:
    """Set ``p.grad`` of every parameter from ``grads`` (same names)."""
    for name, p in params.items():
        p.grad = grads[name].to(dtype=p.dtype, device=p.device)


@dataclass(frozen=True)
class WeightQueries(WeightSpaceEstimator):
    """Options and query bookkeeping shared by the weight-space estimators.

    Attributes:
        mu: finite-difference step ``μ``, absolute, in parameter units [5e-3].
        difference: ``"forward"`` [default, DeepZero] or ``"central"``.
        query_batch: most weight settings per ``batched_loss`` call [64].
    """

    mu: float = 5e-3
    difference: str = "forward"
    query_batch: int = 64

    def validate(self) -> None:
        self._need_float("mu", 0.0)
        self._need_choice("difference", ("forward", "central"))
        self._need_int("query_batch", 1)

    def init_state(self) -> dict[str, Any]:
        return {"queries_last": 0, "queries": 0}

    @property
    def queries_last(self) -> int:
        """Loss queries of the last :meth:`estimate`."""
        return int(self.state["queries_last"])

    @property
    def central(self) -> bool:
        return self.difference == "central"

    def _call(self, batched_loss: BatchedLoss, perturbed: dict[str, Tensor], count: int) -> Tensor:
        with torch.no_grad():
            losses = batched_loss(perturbed)
        if not isinstance(losses, Tensor) or tuple(losses.shape) != (count,):
            got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(
                f"batched_loss returned {got} for {count} queries; it must return a ({count},) "
                "tensor of losses (and shape (1,) for the empty dict, the current θ)"
            )
        self.state["queries_last"] += count
        self.state["queries"] += count
        return losses.detach()

    def _query(self, batched_loss: BatchedLoss, perturbed: dict[str, Tensor]) -> Tensor:
        """Evaluate stacked settings ``(Q, ...)`` in calls of at most ``query_batch``."""
        total = next(iter(perturbed.values())).shape[0]
        out = []
        for start in range(0, total, self.query_batch):
            chunk = {n: v[start : start + self.query_batch] for n, v in perturbed.items()}
            out.append(self._call(batched_loss, chunk, min(self.query_batch, total - start)))
        return torch.cat(out)

    @property
    def _directions_per_call(self) -> int:
        # forward differences carry their own baseline row (see _paired_forward)
        return max(1, self.query_batch // 2) if self.central else max(1, self.query_batch - 1)

    def _paired_forward(
        self,
        batched_loss: BatchedLoss,
        name_points: Callable[[Tensor], dict[str, Tensor]],
        theta: Tensor,
        points: Tensor,
    ) -> Tensor:
        """Forward-difference slopes ``(f(points) - f(θ)) / μ`` with θ evaluated in the same call.

        Batched solvers may couple the members of one call (a batched
        iterative solve that stops when *every* member has converged), so a
        baseline evaluated in a different call can differ by solver-tolerance
        noise comparable to ``μ·g``; evaluating it alongside the perturbed
        points cancels that. Costs one extra query per call.
        """
        losses = self._query(batched_loss, name_points(torch.cat([theta[None], points])))
        return (losses[1:] - losses[0]) / self.mu


@dataclass(frozen=True)
class WeightRGE(WeightQueries):
    """Randomized gradient estimate with Gaussian directions over all parameters.

    Cost: ``q + 1`` queries (+1 paired baseline per call), or ``2q + 1`` central.

    Attributes:
        num_directions: ``q``, directions per estimate [64].
        mu, difference, query_batch: see :class:`WeightQueries`.
    """

    name: ClassVar[str] = "weight-rge"
    num_directions: int = 64

    def validate(self) -> None:
        super().validate()
        self._need_int("num_directions", 1)

    def estimate_at(
        self,
        theta: Mapping[str, Tensor],
        batched_loss: BatchedLoss,
        *,
        generator: torch.Generator,
        theta_is_current: bool = False,
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Estimate the gradient at an arbitrary point ``theta`` (name -> value).

        Only the tensors in ``theta`` are perturbed (jointly). The base query
        is ``{}`` when ``theta_is_current`` (θ equals the model's values),
        otherwise ``theta`` itself stacked to ``Q = 1``; ZO-GraSP uses the
        latter to query at ``θ + μ·g0`` without touching the model.

        Returns:
            ``(grads, loss)``: name -> gradient estimate shaped like the
            value, and the 0-dim loss at ``theta``.
        """
        self.state["queries_last"] = 0
        shapes = {n: t.shape for n, t in theta.items()}
        flat = torch.cat([t.detach().reshape(-1) for t in theta.values()])
        numels = [t.numel() for t in theta.values()]
        base = {} if theta_is_current else {n: t.detach()[None] for n, t in theta.items()}
        f0 = self._call(batched_loss, base, 1)[0]

        def as_dict(points: Tensor) -> dict[str, Tensor]:
            parts = torch.split(points, numels, dim=1)
            return {n: part.reshape(len(points), *shapes[n]) for n, part in zip(shapes, parts, strict=True)}

        grad = torch.zeros_like(flat)
        done = 0
        while done < self.num_directions:
            n = min(self._directions_per_call, self.num_directions - done)
            u = torch.randn((n, flat.numel()), generator=generator, dtype=flat.dtype, device=generator.device)
            u = u.to(flat.device)
            if self.central:
                losses = self._query(batched_loss, as_dict(torch.cat([flat + self.mu * u, flat - self.mu * u])))
                slopes = (losses[:n] - losses[n:]) / (2 * self.mu)
            else:
                slopes = self._paired_forward(batched_loss, as_dict, flat, flat + self.mu * u)
            grad += slopes.to(grad.dtype) @ u
            done += n
        grad /= self.num_directions
        parts = torch.split(grad, numels)
        return {n: g.view(shapes[n]) for n, g in zip(shapes, parts, strict=True)}, f0

    def estimate(self, model: nn.Module, batched_loss: Any, *, generator: torch.Generator) -> Tensor:
        """Write ``.grad`` on every trainable parameter; return the loss at θ."""
        params = trainable_parameters(model)
        grads, f0 = self.estimate_at(params, batched_loss, generator=generator, theta_is_current=True)
        write_grads(params, grads)
        return f0


def _as_named(name: str, shape: torch.Size) -> Callable[[Tensor], dict[str, Tensor]]:
    def named(points: Tensor) -> dict[str, Tensor]:
        return {name: points.view(len(points), *shape)}

    return named


@dataclass(frozen=True)
class WeightCGE(WeightQueries):
    """Coordinate-wise gradient estimate: one query per coordinate (two if central).

    Each ``batched_loss`` call perturbs coordinates of exactly one parameter
    tensor (so feature reuse applies). Options: see :class:`WeightQueries`.
    """

    name: ClassVar[str] = "weight-cge"

    def _coordinates(
        self, params: Mapping[str, Tensor], batched_loss: BatchedLoss, generator: torch.Generator
    ) -> dict[str, Tensor]:
        return {n: torch.arange(p.numel(), device=p.device) for n, p in params.items()}

    def estimate(self, model: nn.Module, batched_loss: Any, *, generator: torch.Generator) -> Tensor:
        """Write ``.grad`` on every trainable parameter; return the loss at θ.

        Coordinates outside the estimated set get gradient 0.
        """
        params = trainable_parameters(model)
        coords = self._coordinates(params, batched_loss, generator)
        self.state["queries_last"] = 0
        f0 = self._call(batched_loss, {}, 1)[0]
        grads = {}
        for name, p in params.items():
            flat = p.detach().reshape(-1)
            grad = torch.zeros_like(flat)
            idx = coords[name].to(flat.device)
            for start in range(0, len(idx), self._directions_per_call):
                j = idx[start : start + self._directions_per_call]
                rows = torch.arange(len(j), device=flat.device)
                plus = flat.expand(len(j), -1).clone()
                plus[rows, j] = flat[j] + self.mu
                if self.central:
                    minus = flat.expand(len(j), -1).clone()
                    minus[rows, j] = flat[j] - self.mu
                    pts = torch.cat([plus, minus]).view(2 * len(j), *p.shape)
                    losses = self._query(batched_loss, {name: pts})
                    slopes = (losses[: len(j)] - losses[len(j) :]) / (2 * self.mu)
                else:
                    slopes = self._paired_forward(batched_loss, _as_named(name, p.shape), flat, plus)
                grad[j] = slopes.to(grad.dtype)
            grads[name] = grad.view(p.shape)
        write_grads(params, grads)
        return f0
