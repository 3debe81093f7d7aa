"""Weight-space zeroth-order gradient estimators (DeepZero, Chen et al., ICLR 2024).

Each estimator writes ``.grad`` on every trainable parameter of a network from
loss *queries* only, so the loss may pass through a black-box solver. Queries
are functional: the network's parameters are never modified; every query is
exactly ``θ + μ·u`` handed to a :data:`BatchedLoss` as stacked full values.

With ``f`` the loss and ``θ ∈ R^d`` (see REFERENCE.md, "ZO estimators"):

* :class:`RGE`, Gaussian ``u_i`` over all parameters jointly:
  ``ĝ = (1/q) Σ_i [(f(θ+μu_i) − f(θ))/μ] u_i``, or with antithetic pairs
  ``[(f(θ+μu_i) − f(θ−μu_i))/(2μ)] u_i`` (Nesterov & Spokoiny 2017). Unlike
  DeepZero's own code this keeps the scale: no normalisation of ``u``.
* :class:`CGE`, one query per coordinate: ``ĝ_j = (f(θ+μe_j) − f(θ))/μ``
  (DeepZero Eq. 3, μ = 5e-3, forward differences).
* :class:`SparseCGE`, CGE on a random subset of each tensor's coordinates
  at layer-wise sparsity ratios (DeepZero Sec. 4, "gradient sparsity"), with
  ratios from :func:`~sciml_zoo.estimators.grasp.zo_grasp_ratios`.

Coordinate queries are grouped by parameter tensor so a loss with DeepZero's
feature reuse can skip the layers before the perturbed one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from sciml_zoo.errors import ConfigError

__all__ = [
    "BatchedLoss",
    "CGE",
    "RGE",
    "SparseCGE",
    "WEIGHT_SPACE_ESTIMATORS",
    "make_weight_space_estimator",
    "trainable_parameters",
]

BatchedLoss = Callable[[dict[str, Tensor]], Tensor]
"""``batched_loss(perturbed) -> (Q,) losses``; ``perturbed`` maps a subset of
parameter names to stacked full values ``(Q, *param.shape)``; ``{}`` evaluates
the current θ and returns shape ``(1,)``."""


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Map name -> parameter for every parameter with ``requires_grad``."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _positive(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {value!r}")
    if kind is int and int(value) != value:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return kind(value)


class _ZerothOrder:
    """Shared query bookkeeping: chunking, shape checks and query counting."""

    def __init__(self, *, mu: float, central: bool, query_batch: int) -> None:
        self.mu = _positive("mu", mu, float)
        self.central = bool(central)
        self.query_batch = _positive("query_batch", query_batch, int)
        self.queries_last = 0

    def _call(self, batched_loss: BatchedLoss, perturbed: dict[str, Tensor], count: int) -> Tensor:
        with torch.no_grad():
            losses = batched_loss(perturbed)
        if not isinstance(losses, Tensor) or tuple(losses.shape) != (count,):
            got = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(
                f"batched_loss returned {got} for {count} queries; it must return a ({count},) "
                "tensor of losses (and shape (1,) for the empty dict, the current θ)"
            )
        self.queries_last += count
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

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


def _write_grads(params: Mapping[str, Tensor], grads: Mapping[str, Tensor]) -> None:
    for name, p in params.items():
        p.grad = grads[name].to(dtype=p.dtype, device=p.device)


class RGE(_ZerothOrder):
    """Randomized gradient estimate with Gaussian directions over all parameters.

    Args:
        num_directions: ``q``, directions per estimate (cost ``q + 1`` queries,
            or ``2q + 1`` when central).
        mu: smoothing step ``μ`` (absolute, in parameter units).
        central: antithetic pairs ``f(θ+μu) − f(θ−μu)`` instead of forward.
        query_batch: most settings per ``batched_loss`` call.
    """

    def __init__(
        self,
        *,
        num_directions: int = 64,
        mu: float = 5e-3,
        central: bool = False,
        query_batch: int = 64,
    ) -> None:
        super().__init__(mu=mu, central=central, query_batch=query_batch)
        self.num_directions = _positive("num_directions", num_directions, int)

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
        self.queries_last = 0
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
            u = torch.randn((n, flat.numel()), generator=generator, dtype=flat.dtype, device=generator.device).to(
                flat.device
            )
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

    def estimate(self, model: nn.Module, batched_loss: BatchedLoss, *, generator: torch.Generator) -> Tensor:
        """Write ``.grad`` on every trainable parameter; return the loss at θ."""
        params = trainable_parameters(model)
        grads, f0 = self.estimate_at(params, batched_loss, generator=generator, theta_is_current=True)
        _write_grads(params, grads)
        return f0


class CGE(_ZerothOrder):
    """Coordinate-wise gradient estimate: one query per coordinate (two if central).

    Args:
        mu: finite-difference step ``μ`` (DeepZero: 5e-3, forward).
        central: central differences ``(f(θ+μe_j) − f(θ−μe_j))/(2μ)``.
        query_batch: most settings per ``batched_loss`` call; each call
            perturbs coordinates of exactly one parameter tensor.
    """

    def __init__(self, *, mu: float = 5e-3, central: bool = False, query_batch: int = 64) -> None:
        super().__init__(mu=mu, central=central, query_batch=query_batch)

    def _coordinates(self, params: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        return {n: torch.arange(p.numel(), device=p.device) for n, p in params.items()}

    def estimate(self, model: nn.Module, batched_loss: BatchedLoss, *, generator: torch.Generator) -> Tensor:
        """Write ``.grad`` on every trainable parameter; return the loss at θ.

        Coordinates outside the estimated set get gradient 0.
        """
        params = trainable_parameters(model)
        coords = self._coordinates(params, generator)
        self.queries_last = 0
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
                    slopes = self._paired_forward(
                        batched_loss, lambda pts, name=name, p=p: {name: pts.view(len(pts), *p.shape)}, flat, plus
                    )
                grad[j] = slopes.to(grad.dtype)
            grads[name] = grad.view(p.shape)
        _write_grads(params, grads)
        return f0


class SparseCGE(CGE):
    """CGE on random per-tensor coordinate subsets (DeepZero's gradient sparsity).

    Each tensor of ``numel`` entries at sparsity ``r`` gets a random subset of
    ``max(1, round((1 − r)·numel))`` coordinates, redrawn every
    ``redraw_every`` calls of :meth:`estimate`; other coordinates get gradient
    0 and the optimizer still updates the dense weights. 1-D tensors (biases,
    norm parameters) are always fully estimated. Cost per call:
    ``1 + Σ|S|`` queries plus one paired baseline per call (``1 + 2Σ|S|`` central).

    Args:
        ratios: sparsity per parameter name (from ZO-GraSP), or one float for
            every tensor with 2+ dimensions.
        mu: finite-difference step.
        central: central differences.
        redraw_every: ``K``, calls between redraws of the subsets.
        query_batch: most settings per ``batched_loss`` call.
    """

    def __init__(
        self,
        *,
        ratios: Mapping[str, float] | float,
        mu: float = 5e-3,
        central: bool = False,
        redraw_every: int = 1,
        query_batch: int = 64,
    ) -> None:
        super().__init__(mu=mu, central=central, query_batch=query_batch)
        self.redraw_every = _positive("redraw_every", redraw_every, int)
        values = [ratios] if not isinstance(ratios, Mapping) else list(ratios.values())
        for r in values:
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
                raise ConfigError(f"sparsity ratios must be numbers in [0, 1], got {r!r}")
        self.ratios = dict(ratios) if isinstance(ratios, Mapping) else float(ratios)
        self._subsets: dict[str, Tensor] | None = None
        self._calls = 0

    @property
    def subsets(self) -> dict[str, Tensor] | None:
        """Current coordinate subsets (name -> sorted flat indices), or None."""
        return self._subsets

    def _coordinates(self, params: Mapping[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        from sciml_zoo.estimators.grasp import coordinate_subsets  # grasp imports this module

        stale = self._subsets is None or set(self._subsets) != set(params)
        if stale or self._calls % self.redraw_every == 0:
            self._subsets = coordinate_subsets(params, self.ratios, generator=generator)
        self._calls += 1
        return self._subsets  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        """Subsets and call count, for checkpoints (resume redraws on schedule)."""
        return {"calls": self._calls, "subsets": self._subsets}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._calls = int(state["calls"])
        self._subsets = None if state["subsets"] is None else dict(state["subsets"])


WEIGHT_SPACE_ESTIMATORS: dict[str, type[_ZerothOrder]] = {
    "rge": RGE,
    "cge": CGE,
    "sparse-cge": SparseCGE,
}


def make_weight_space_estimator(name: str, **options: Any) -> RGE | CGE | SparseCGE:
    """Build the estimator registered as ``name`` (``rge``, ``cge``, ``sparse-cge``).

    Raises:
        ConfigError: unknown name, unknown or missing option, or a bad value.
    """
    if name not in WEIGHT_SPACE_ESTIMATORS:
        raise ConfigError(
            f"unknown weight-space estimator {name!r}; choose one of {', '.join(WEIGHT_SPACE_ESTIMATORS)}"
        )
    cls = WEIGHT_SPACE_ESTIMATORS[name]
    sig = inspect.signature(cls.__init__)
    valid = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    required = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if unknown := sorted(set(options) - set(valid)):
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for estimator {name!r}; valid options: {', '.join(valid)}"
        )
    if missing := [r for r in required if r not in options]:
        raise ConfigError(f"estimator {name!r} needs option(s) {', '.join(missing)}")
    return cls(**options)  # type: ignore[return-value]
