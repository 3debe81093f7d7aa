"""DeepZero's sparse coordinate-wise estimator ``sparse-cge`` (Chen et al., ICLR 2024, Sec. 4).

As published: forward differences with ``μ = 5e-3``; layer-wise sparsity
ratios from ZO-GraSP (:func:`~sciml_zoo.estimators.grasp.zo_grasp_ratios`,
function queries only, on the first batch, at the global ``sparsity``);
inside each layer a random subset of coordinates at its ratio, redrawn every
``redraw_every`` iterations, with the dense weights updated by the optimizer;
biases and other 1-D tensors always estimated; queries batched by parameter
tensor so the batched loss reuses the features before the perturbed layer
(feature reuse; the loss is :func:`sciml_zoo.train.objective.make_batched_sol_loss`).
``difference="central"`` is the central-difference variant (twice the queries).

Cost per iteration: ``1 + Σ|S|`` loss queries plus one paired baseline per
call (``1 + 2Σ|S|`` central); in SOL every query is an ``n``-step rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sciml_zoo.estimators.grasp import zo_grasp_ratios
from sciml_zoo.estimators.subsets import coordinate_subsets
from sciml_zoo.estimators.weight_space import BatchedLoss, WeightCGE

__all__ = ["SparseCGE"]


@dataclass(frozen=True)
class SparseCGE(WeightCGE):
    """CGE on random per-tensor coordinate subsets (see the module docstring).

    Attributes:
        ratios: sparsity per parameter name, or one float for every tensor
            with 2+ dimensions; None [default]: ZO-GraSP ratios computed on
            the first call (kept in the state, so checkpoints keep them).
        sparsity: global fraction of weight coordinates *not* estimated, for
            ZO-GraSP [0.9] (ignored when ``ratios`` is given).
        grasp_directions: RGE directions of each of ZO-GraSP's two estimates
            [192] (cost ``2 (q + 1)`` queries, once).
        redraw_every: iterations between redraws of the subsets [1].
        mu: finite-difference step [5e-3]; difference: ``"forward"``
            [default, as published] or ``"central"``; query_batch: settings
            per loss call [64].
    """

    name: ClassVar[str] = "sparse-cge"
    ratios: Mapping[str, float] | float | None = None
    sparsity: float = 0.9
    grasp_directions: int = 192
    redraw_every: int = 1

    def validate(self) -> None:
        super().validate()
        self._need_int("redraw_every", 1)
        self._need_int("grasp_directions", 1)
        self._need_float("sparsity", 0.0, 1.0, open_low=False)
        if self.ratios is not None:
            values = list(self.ratios.values()) if isinstance(self.ratios, Mapping) else [self.ratios]
            for r in values:
                if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r <= 1.0:
                    self._fail("ratios", f"sparsity ratios must be numbers in [0, 1], got {r!r}")

    def init_state(self) -> dict[str, Any]:
        return {**super().init_state(), "calls": 0, "subsets": None, "ratios": None}

    @property
    def subsets(self) -> dict[str, Tensor] | None:
        """Current coordinate subsets (name -> sorted flat indices), or None."""
        return self.state["subsets"]  # type: ignore[no-any-return]

    def _coordinates(
        self, params: Mapping[str, Tensor], batched_loss: BatchedLoss, generator: torch.Generator
    ) -> dict[str, Tensor]:
        st = self.state
        ratios: Mapping[str, float] | float | None = self.ratios if self.ratios is not None else st["ratios"]
        if ratios is None:
            model = _ParamsView(params)
            ratios = zo_grasp_ratios(
                model,  # type: ignore[arg-type]
                batched_loss,
                target_sparsity=self.sparsity,
                num_directions=self.grasp_directions,
                mu=self.mu,
                generator=generator,
                query_batch=self.query_batch,
            )
            st["ratios"] = dict(ratios)
        stale = st["subsets"] is None or set(st["subsets"]) != set(params)
        if stale or st["calls"] % self.redraw_every == 0:
            st["subsets"] = coordinate_subsets(params, ratios, generator=generator)
        st["calls"] += 1
        return st["subsets"]  # type: ignore[no-any-return]


class _ParamsView:
    """The ``named_parameters`` view ZO-GraSP needs, over already-selected parameters."""

    def __init__(self, params: Mapping[str, Tensor]) -> None:
        self._params = params

    def named_parameters(self) -> Any:
        return iter(self._params.items())
