"""Zero-query and random-direction solver-space estimators.

``J^T v`` estimates and their solver cost per wrapped step for batch ``B``
(central differences; ``difference="forward"`` halves the probe cost):

================  =============================================  =====================
name              ``J^T v`` estimate                             sample-steps
================  =============================================  =====================
``stop-gradient`` ``0`` (List et al. 2024, arXiv 2402.12971)     ``B``
``identity``      ``v`` (a short step is near the identity)      ``B``
``state-rge``     ``U (U^T U)^+ Y^T v``, ``Y = J U``             ``B + 2 q B``
``identity-rge``  ``v + U (U^T U)^+ (Y - U)^T v``                ``B + 2 q B``
================  =============================================  =====================

``U`` holds ``q = num_directions`` Gaussian directions per batch member
(Ma et al. 2024, arXiv 2404.11766, with least squares instead of averaging,
which makes the estimate the exact projection of ``J^T v`` on the span of
``U``). Random directions in a state of thousands of entries barely see
``J``; prefer ``banded``/``jacobian``/``auto`` unless the state is tiny.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from sciml_zoo.estimators.base import ProbeContext, SolverSpaceEstimator
from sciml_zoo.estimators.probes import finite_difference_jvp, lowrank_vjp, masked, random_directions

__all__ = ["FiniteDifferences", "Identity", "IdentityRGE", "StateRGE", "StopGradient"]


@dataclass(frozen=True)
class StopGradient(SolverSpaceEstimator):
    """``J^T v = 0``: nothing flows back through the solver (List et al.'s NOG)."""

    name: ClassVar[str] = "stop-gradient"
    blocks_gradient: ClassVar[bool] = True

    def vjp(self, ctx: ProbeContext, data: Any, v: Tensor) -> Tensor:
        return v.new_zeros(v.shape)


@dataclass(frozen=True)
class Identity(SolverSpaceEstimator):
    """``J^T v = v`` (masked): treats one short solver step as the identity; no queries."""

    name: ClassVar[str] = "identity"

    def vjp(self, ctx: ProbeContext, data: Any, v: Tensor) -> Tensor:
        return masked(v, ctx.mask)


@dataclass(frozen=True)
class FiniteDifferences(SolverSpaceEstimator):
    """Options shared by every query-based solver-space estimator.

    Attributes:
        mu: relative finite-difference step; the absolute step is
            ``mu * rms(state)`` per batch member. ``1e-2`` keeps float32
            round-off near ``eps / mu ~ 1e-5`` relative; keep ``mu * rms``
            well above an inner solver's tolerance. Checked at first use
            (:func:`~sciml_zoo.estimators.probes.check_step_size`).
        difference: ``"central"`` (error ``O(mu^2)``, 2 queries per
            direction) or ``"forward"`` (``O(mu)``, 1 query per direction; the
            forward output is reused as the base point).
        query_batch: most rows per solver call (None: all probes in one call).
    """

    mu: float = 1e-2
    difference: str = "central"
    query_batch: int | None = None

    def validate(self) -> None:
        self._need_float("mu", 0.0, 1.0)
        self._need_choice("difference", ("central", "forward"))
        self._need_int("query_batch", 1, optional=True)

    def relative_step(self) -> float | None:
        return float(self.mu)

    def probe(self, ctx: ProbeContext, tangents: Tensor) -> Tensor:
        """``J u`` for tangents ``(B, n, C, *spatial)`` by this estimator's differences."""
        return finite_difference_jvp(
            ctx.step,
            ctx.state,
            ctx.params,
            tangents,
            mu=self.mu,
            output=ctx.output if self.difference == "forward" else None,
            query_batch=self.query_batch,
        )


@dataclass(frozen=True)
class StateRGE(FiniteDifferences):
    """Least-squares ``J^T v`` from ``num_directions`` random probes (see the module table).

    Attributes:
        num_directions: Gaussian directions ``q`` per batch member [8].
        identity_prior: estimate ``J - I`` instead of ``J`` (``identity-rge``).
    """

    name: ClassVar[str] = "state-rge"
    num_directions: int = 8

    def validate(self) -> None:
        super().validate()
        self._need_int("num_directions", 1)

    def prepare(self, ctx: ProbeContext) -> tuple[Tensor, Tensor]:
        u = random_directions(self.num_directions, ctx.state, mask=ctx.mask, generator=ctx.generator)
        return u, self.probe(ctx, u)

    def vjp(self, ctx: ProbeContext, data: Any, v: Tensor) -> Tensor:
        u, y = data
        return lowrank_vjp(u, y, masked(v, ctx.mask))


@dataclass(frozen=True)
class IdentityRGE(StateRGE):
    """``v + U (U^T U)^+ (JU - U)^T v``: random probes correct the identity."""

    name: ClassVar[str] = "identity-rge"

    def vjp(self, ctx: ProbeContext, data: Any, v: Tensor) -> Tensor:
        u, y = data
        v = masked(v, ctx.mask)
        return v + lowrank_vjp(u, y - u, v)
