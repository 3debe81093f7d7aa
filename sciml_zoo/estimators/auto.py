"""The default estimator ``auto``: dense or banded Jacobian, checked, with a fallback.

``auto`` picks, at every wrapped step, the cheapest exact-where-it-applies
model of ``J = d step / d state``:

- :class:`~sciml_zoo.estimators.jacobian.Jacobian` (every column) when a
  sample has at most ``max_dense`` valid entries, or when the banded
  colouring would need as many probes anyway;
- :class:`~sciml_zoo.estimators.banded.Banded` (column colouring, ``radius``)
  otherwise.

**Safeguard.** On the first use, every ``check_every`` steps, and at every
step after a failed check, one held-out random direction ``u`` per batch
member rides along in the same batched solver call. Its measured ``J u`` is
compared with the model's prediction; a relative residual above
``max_residual`` (a non-local step given a narrow band, a noisy or strongly
nonlinear black box) makes that member's ``J^T v`` fall back to ``identity``
for the step, and a banded model is widened (radius doubled while the probes
stay within ``max_dense`` per sample) for the next step. A non-finite estimate
also falls back, and so does a step at which ``mu * rms(state)`` would be lost
in round-off (the first step raises instead, so a bad ``mu`` is not hidden).
Every check, failure and fallback is counted in :meth:`Auto.stats` (and in the
checkpointed state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sciml_zoo.estimators.banded import Banded
from sciml_zoo.estimators.base import ProbeContext
from sciml_zoo.estimators.jacobian import Jacobian, ProbedModel
from sciml_zoo.estimators.probes import agreement, masked, random_directions, valid_count
from sciml_zoo.estimators.state_rge import FiniteDifferences

__all__ = ["Auto"]


@dataclass(frozen=True)
class Auto(FiniteDifferences):
    """Dense or banded Jacobian with a held-out check and an identity fallback.

    Attributes:
        max_dense: largest number of valid entries per sample measured
            densely [512] (``jacobian`` costs that many probes per sample).
        radius: initial band radius for large states [2]; widened after a
            failed check (kept in the state).
        boundary: colouring of the band, ``"periodic"`` [default; safe for
            any solver] or ``"open"``.
        max_residual: largest relative residual ``|J u - model u| / |J u|`` on
            the held-out probe before falling back [0.25].
        check_every: wrapped steps between checks [50] (1: every step).
        mu, difference, query_batch: as for every finite-difference estimator.
    """

    name: ClassVar[str] = "auto"
    max_dense: int = 512
    radius: int = 2
    boundary: str = "periodic"
    max_residual: float = 0.25
    check_every: int = 50

    def validate(self) -> None:
        super().validate()
        self._need_int("max_dense", 0)
        self._need_int("radius", 0)
        self._need_choice("boundary", ("periodic", "open"))
        self._need_float("max_residual", 0.0)
        self._need_int("check_every", 1)

    def init_state(self) -> dict[str, Any]:
        return {
            "steps": 0,
            "checks": 0,
            "failed_checks": 0,
            "fallback_steps": 0,
            "fallback_members": 0,
            "nonfinite": 0,
            "step_size_fallbacks": 0,
            "widened": 0,
            "failing": False,
            "radius": self.radius,
            "mode": "",
            "last_residual": 0.0,
        }

    def model_for(self, state: Tensor, mask: Tensor | None) -> ProbedModel:
        """The model ``auto`` uses for this state layout (dense or banded)."""
        dense = Jacobian(mu=self.mu, difference=self.difference, query_batch=self.query_batch)
        banded = Banded(
            mu=self.mu,
            difference=self.difference,
            query_batch=self.query_batch,
            radius=int(self.state["radius"]),
            boundary=self.boundary,
        )
        count = valid_count(state, mask)
        if count <= self.max_dense or banded.num_probes(state, mask) >= count:
            return dense
        return banded

    def prepare(self, ctx: ProbeContext) -> Any:
        st = self.state
        model = self.model_for(ctx.state, ctx.mask)
        st["mode"] = model.name
        check = st["steps"] % self.check_every == 0 or bool(st["failing"])
        st["steps"] += 1
        dirs = model.directions(ctx)
        n = dirs.shape[1]
        if check:
            held_out = random_directions(1, ctx.state, mask=ctx.mask, generator=ctx.generator)
            dirs = torch.cat([dirs, held_out], 1)
        try:
            responses = self.probe(ctx, dirs)
        except ValueError:  # the step is lost in round-off at this state (checked at first use by ZOStep)
            st["step_size_fallbacks"] += 1
            return None
        fitted = model.assemble(ctx, responses[:, :n])
        failed = torch.zeros(ctx.state.shape[0], dtype=torch.bool, device=ctx.state.device)
        if check:
            measured = masked(responses[:, n], ctx.mask)
            predicted = masked(model.jvp(ctx, fitted, held_out[:, 0]), ctx.mask)
            residual = agreement(predicted, measured).relative_error  # per batch member
            failed = ~(residual <= self.max_residual)  # NaN fails too
            st["checks"] += 1
            st["last_residual"] = float(residual.max())
            st["failing"] = bool(failed.any())
            if st["failing"]:
                st["failed_checks"] += 1
                self._widen(ctx, model)
        return model, fitted, failed

    def _widen(self, ctx: ProbeContext, model: ProbedModel) -> None:
        if not isinstance(model, Banded):
            return
        wider = Banded(radius=max(1, 2 * model.radius), boundary=self.boundary)
        if wider.num_probes(ctx.state, ctx.mask) <= max(self.max_dense, 1):
            self.state["radius"] = wider.radius
            self.state["widened"] += 1

    def vjp(self, ctx: ProbeContext, data: Any, v: Tensor) -> Tensor:
        v = masked(v, ctx.mask)
        if data is None:  # no usable probes at this step
            self.state["fallback_steps"] += 1
            self.state["fallback_members"] += int(v.shape[0])
            return v
        model, fitted, failed = data
        grad = model.vjp(ctx, fitted, v)
        bad = ~torch.isfinite(grad).flatten(1).all(1)
        if bool(bad.any()):
            self.state["nonfinite"] += 1
        fallback = failed | bad
        if bool(fallback.any()):
            self.state["fallback_steps"] += 1
            self.state["fallback_members"] += int(fallback.sum())
            shape = (-1, *[1] * (v.dim() - 1))
            grad = torch.where(fallback.view(shape), v, grad)
        return grad
