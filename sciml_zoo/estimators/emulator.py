"""``emulator``: ``J^T v`` from a network fitted online to the rollout's own pairs, a lagged stencil, or ``J v``.

The forward runs the true step; the backward picks one of three candidates whose cost does not grow with the state:

- ``J_E^T v`` by autograd through a small CNN emulator ``E(x) ~ step(x)``: the differentiable emulator of
  Frezat et al. 2024 (arXiv 2310.19385), fitted online on the ``(state, next state)`` pairs the rollout
  produces anyway (reusing the emulator forward made for the product), and optionally on the last check's own
  directional differences (``tangent_weight``). No extra queries.
- ``J_S^T v`` (``stencil``): a linear stencil model of the Jacobian whose coefficients depend on the local
  state, fitted to every earlier check's directional differences (:mod:`~.lagged_stencil`). No extra queries.
- ``J v`` (``transpose``): one forward difference along the cotangent itself, exact for a self-adjoint step
  (diffusion, a pressure projection, a symmetric implicit solve) whatever its coupling range. One query per member.

**Held-out check of the product itself.** Every ``check_every`` wrapped steps, for ``check_members`` members
and ``q = check_directions`` Gaussian directions ``r_i`` each, the solver gives the true slopes
``<J^T v, r_i>`` (forward differences from the step's output; central with ``difference = "central"``; step
``mu`` times the member's spread about its mean), and each candidate's relative error ``err`` is estimated from
how well it predicts them (:mod:`~sciml_zoo.estimators.held_out`), whatever the state size. Of the candidates
with ``err <= max_residual`` (``stencil_max_residual`` for the stencil) the smallest ``err`` is used, else the
``fallback`` ``f`` (``stop-gradient``: ``f = 0``, List et al. 2024, arXiv 2402.12971) until a later check
passes; with ``shrink``, ``f + a (J_E^T v - f)``, ``a`` in [0, 1] the least-squares factor the same slopes give.

**Cost per wrapped step** (batch ``B``): the forward's ``B`` sample-steps; every ``check_every`` steps
``(q + 1) * check_members`` more (central: ``(2 q + 1)``); ``B`` more while ``J v`` is in use: at most about one
probe per forward sample-step, whatever the grid and the coupling range; compute: the emulator's forward and backward
on the batch (the tangent fit: forward-mode products on the ``q * check_members`` probes too), a stencil refit per
check. Counted and checkpointed: resume is exact.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sciml_zoo.checkpoint import check_like, check_optimizer_state
from sciml_zoo.estimators.base import Estimator, ProbeContext
from sciml_zoo.estimators.emulator_state import INHERITED, check_emulator_state, initial_emulator_state
from sciml_zoo.estimators.held_out import running_residual, shrink_factor, slopes, update_shrink
from sciml_zoo.estimators.lagged_stencil import TAPS, stencil_vjp, update_stencil
from sciml_zoo.estimators.probes import cotangent_jvp, finite_difference_jvp, masked, random_directions
from sciml_zoo.estimators.state_rge import FiniteDifferences
from sciml_zoo.nn.emulator import PRECISIONS, StepEmulator, emulator_dtype
from sciml_zoo.nn.networks import PADDING_MODES

__all__ = ["Emulator"]

_TANGENT_WHEN = {  # per mode in use: the tangent_when values whose per-step fits add the tangent term
    "emulator": {"always"},
    "transpose": {"always", "untrusted"},
    "stencil": {"always", "untrusted"},
    "fallback": {"always", "untrusted", "fallback"},
}


@dataclass(frozen=True)
class Emulator(FiniteDifferences):
    """An online-fitted step emulator, trusted while a check along its estimate passes (module doc).

    Attributes:
        width, depth, kernel_size, padding: the emulator CNN [12, 3, 5; ``"auto"``: the
            correction network's padding] (4,225 weights for one 2D channel, radius 6).
        precision: its dtype, ``"float32"``, ``"float64"`` or [``"auto"``: float64 for 1D states on a CPU].
        lr: its Adam learning rate [1e-3].
        fit_every, untrusted_fit_steps: one Adam step on the pairs of every ``fit_every``-th wrapped step
            while trusted [4] (on the product's forward), ``untrusted_fit_steps`` on every step's otherwise [1].
        tangent_weight, tangent_when, tangent_every, tangent_steps: weight [0: off] of a second fit term, the
            relative error of ``J_E r`` against the last check's ``J r``: in the fits of every ``tangent_every``-th
            step [1], always [default] or while the emulator (``"untrusted"``) or both candidates (``"fallback"``)
            are out of use; or (``"check"``) ``tangent_steps`` [4] anchored Adam steps before a check, while both are.
        check_every, check_members, check_directions, check_decay: a check every [16] wrapped steps,
            on [2] members, [4] directions each; earlier checks weigh [0.5].
        max_residual: largest estimated ``|J^T v - g| / |J^T v|`` in use [0.5]: a cosine of at least 0.87.
        stencil_max_residual: the same for the stencil [0.25]: one model for every state, so its bias persists.
        transpose, stencil, stencil_taps: also try ``J v`` (one query per member) [True], the lagged stencil [True]
            of [25] taps per pair of channels (25 wide in 1D, 5 x 5 in 2D, 3 x 3 x 3 in 3D).
        fallback: ``J^T v`` while untrusted, ``"stop-gradient"`` or ``"identity"``.
        shrink: while untrusted, ``f + a (J_E^T v - f)`` with the factor ``a`` the check fits [True].
        mu, difference, query_batch: the check's differences [``"forward"``: q queries per member, not 2 q].
    """

    name: ClassVar[str] = "emulator"
    width: int = 12
    depth: int = 3
    kernel_size: int = 5
    padding: str = "auto"
    precision: str = "auto"
    lr: float = 1e-3
    fit_every: int = 4
    untrusted_fit_steps: int = 1
    tangent_weight: float = 0.0
    tangent_when: str = "always"
    tangent_steps: int = 4
    tangent_every: int = 1
    check_every: int = 16
    check_members: int = 2
    check_directions: int = 4
    check_decay: float = 0.5
    max_residual: float = 0.5
    stencil_max_residual: float = 0.25
    transpose: bool = True
    stencil: bool = True
    stencil_taps: int = TAPS
    fallback: str = "stop-gradient"
    shrink: bool = True
    difference: str = "forward"  # the check tells an error near 0.5 from a larger one: O(mu) suffices

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_net", None)
        object.__setattr__(self, "_opt", None)

    def validate(self) -> None:
        super().validate()
        counts = ("width", "depth", "kernel_size", "fit_every", "untrusted_fit_steps", "tangent_steps", "tangent_every")
        for key in (*counts, "check_every", "check_members", "check_directions", "stencil_taps"):
            self._need_int(key, 1)
        if self.kernel_size % 2 == 0:
            self._fail("kernel_size", "use an odd kernel size, e.g. 5")
        self._need_choice("padding", ("auto", *PADDING_MODES))
        self._need_choice("precision", PRECISIONS)
        self._need_float("lr", 0.0, 1.0)
        self._need_float("tangent_weight", 0.0, open_low=False)
        self._need_float("max_residual", 0.0)
        self._need_float("stencil_max_residual", 0.0)
        self._need_float("check_decay", 0.0, 1.0, open_low=False)
        for key in ("transpose", "shrink", "stencil"):
            self._need_bool(key)
        self._need_choice("fallback", ("stop-gradient", "identity"))
        self._need_choice("tangent_when", ("always", "untrusted", "fallback", "check"))

    def for_network(self, network: nn.Module) -> Emulator:
        """Resolve ``padding="auto"`` to the correction network's padding (``zeros`` if it has none)."""
        if self.padding != "auto":
            return self
        modes = [m.padding_mode for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)]
        return dataclasses.replace(self, padding=modes[0] if modes else "zeros")

    # -- state -----------------------------------------------------------------------
    def init_state(self) -> dict[str, Any]:
        return initial_emulator_state()

    def state_dict(self) -> dict[str, Any]:
        if self._net is not None:  # type: ignore[attr-defined]
            self.state["emulator"] = self._net.state_dict()  # type: ignore[attr-defined]
            self.state["optimizer"] = self._opt.state_dict()  # type: ignore[attr-defined]
        return super().state_dict()

    def load_state_dict(self, state: Any) -> None:
        super().load_state_dict(state)
        object.__setattr__(self, "_net", None)
        object.__setattr__(self, "_opt", None)
        check_emulator_state(self.state)
        if self.state["layout"] is not None:
            self._build(*self.state["layout"], restore=True)

    def stats(self) -> dict[str, Any]:
        out = {k: v for k, v in super().stats().items() if k not in ("mode", "shrink_num", "shrink_den")}
        return out | {"trusted": int(self.state["mode"] != "fallback"), "shrink_factor": shrink_factor(self.state)}

    def inherit(self, previous: Estimator) -> None:
        """Start from ``previous``'s emulator, optimizer and check (a curriculum's earlier stage), not its counts:
        the step, and so its Jacobian, do not depend on the unroll length."""
        if not isinstance(previous, Emulator) or previous._net is None:  # type: ignore[attr-defined]
            return
        learned = previous.state_dict()  # a copy
        for key in INHERITED:
            self.state[key] = learned[key]
        self._build(*self.state["layout"], restore=True)

    def _build(self, channels: int, num_params: int, dim: int, dtype: str, *, restore: bool = False) -> None:
        shape = {"width": self.width, "depth": self.depth, "kernel_size": self.kernel_size}
        net = StepEmulator(channels, num_params, dim, **shape, padding=self._boundary()).to(getattr(torch, dtype))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        if restore:  # every tensor checked against a fresh emulator first: one line naming the field
            check_like("emulator", self.state["emulator"], net.state_dict())
            check_optimizer_state("optimizer", self.state["optimizer"], opt)
            net.load_state_dict(self.state["emulator"])
            opt.load_state_dict(self.state["optimizer"])
        object.__setattr__(self, "_net", net)
        object.__setattr__(self, "_opt", opt)
        self.state["layout"] = [channels, num_params, dim, dtype]

    # -- the estimate --------------------------------------------------------------------
    def prepare(self, ctx: ProbeContext) -> None:
        if self._net is None:  # type: ignore[attr-defined]
            dtype = emulator_dtype(self.precision, ctx.state)
            self._build(ctx.state.shape[1], ctx.params.shape[1], ctx.state.dim() - 2, dtype)
            self._net.to(ctx.state.device).calibrate(ctx.state, ctx.params, ctx.output)  # type: ignore[attr-defined]

    def vjp(self, ctx: ProbeContext, data: Any, v: Tensor) -> Tensor:
        st, net = self.state, self._net  # type: ignore[attr-defined]
        v = masked(v, ctx.mask)
        check = st["steps"] % self.check_every == 0
        refit = check and self.tangent_when == "check" and st["mode"] == "fallback" and st["probes"] is not None
        if refit and self.tangent_weight:
            with torch.enable_grad():  # the last failed check's probes, anchored by this step's pairs; then the check
                for _ in range(self.tangent_steps):
                    tangent = self.tangent_weight * net.tangent_loss(*st["probes"], ctx.mask)
                    self._adam_step(net.output_loss(net(ctx.state, ctx.params), ctx.output, ctx.mask) + tangent)
        shrunk = self.shrink and st["mode"] == "fallback" and shrink_factor(st) > 0  # else unused: J v or a = 0
        product = st["mode"] == "emulator" or check or shrunk  # J_E^T v: in use, for the check or shrunk
        fit = st["mode"] not in ("emulator", "stencil") or st["steps"] % self.fit_every == 0
        if product or fit:  # neither while the stencil is in use, between fits: no emulator forward then
            with torch.enable_grad():
                x = ctx.state.detach().requires_grad_(product)
                predicted = net(x, ctx.params)
                if product:
                    (grad,) = torch.autograd.grad(predicted, x, grad_outputs=v.to(predicted.dtype), retain_graph=fit)
                    grad = masked(grad, ctx.mask)
                if fit:  # the fit reuses the forward just made for the product
                    self._fit(ctx, predicted)
        if check:
            self._check(ctx, v, grad)
        st["steps"] += 1
        if st["mode"] == "transpose":
            grad = self._transposed(ctx, v, slice(None))
            st["transpose_steps"] += 1
        elif st["mode"] == "stencil":
            grad = masked(stencil_vjp(st["stencil"], ctx.state, v, self._boundary()), ctx.mask)
            st["stencil_steps"] += 1
        if st["mode"] != "fallback" and bool(torch.isfinite(grad).all()):
            return grad
        st["nonfinite"] += int(st["mode"] != "fallback")  # a candidate in use gave a non-finite product
        st["mode"] = "fallback"
        st["fallback_steps"] += 1
        st["fallback_members"] += int(v.shape[0])
        base = self._fallback(v)
        if self.shrink and product and bool(torch.isfinite(grad).all()):  # a check may have just moved a
            return base + shrink_factor(st) * (grad - base)
        return base

    def _boundary(self) -> str:
        return "circular" if self.padding == "auto" else self.padding  # "auto" unresolved: no network given

    def _fallback(self, v: Tensor) -> Tensor:
        return v if self.fallback == "identity" else torch.zeros_like(v)

    def _transposed(self, ctx: ProbeContext, v: Tensor, members: Any) -> Tensor:
        """``J v`` for ``J^T v`` (exact for a self-adjoint step): one forward difference per member."""
        x, p, out, batch = ctx.state[members], ctx.params[members], ctx.output[members], self.query_batch
        return masked(cotangent_jvp(ctx.step, x, p, v[members], mu=self.mu, output=out, query_batch=batch), ctx.mask)

    def _fit(self, ctx: ProbeContext, predicted: Tensor) -> None:
        """Adam steps on this step's pairs and the last check's probes: 1 in use, else ``untrusted_fit_steps``."""
        st, net = self.state, self._net  # type: ignore[attr-defined]
        tangent = self.tangent_weight and st["probes"] is not None and self.tangent_when in _TANGENT_WHEN[st["mode"]]
        tangent = tangent and st["steps"] % self.tangent_every == 0
        for i in range(1 if st["mode"] == "emulator" else self.untrusted_fit_steps):
            predicted = net(ctx.state, ctx.params) if i else predicted
            loss = net.output_loss(predicted, ctx.output, ctx.mask)
            if tangent:
                loss = loss + self.tangent_weight * net.tangent_loss(*st["probes"], ctx.mask)
            self._adam_step(loss)

    def _adam_step(self, loss: Tensor) -> None:
        """One Adam step of the emulator on ``loss``, counted in ``fits``."""
        self._opt.zero_grad(set_to_none=True)  # type: ignore[attr-defined]
        loss.backward(inputs=list(self._net.parameters()))  # type: ignore[attr-defined]
        self._opt.step()  # type: ignore[attr-defined]
        self.state["fits"] += 1

    def _check(self, ctx: ProbeContext, v: Tensor, grad: Tensor) -> None:
        """Update the running estimates of ``|J^T v - g| / |J^T v|`` of each candidate (module doc)."""
        st = self.state
        k = min(self.check_members, ctx.state.shape[0])
        members = torch.randperm(ctx.state.shape[0], generator=ctx.generator)[:k].to(ctx.state.device)
        x, p = ctx.state[members], ctx.params[members]
        r = random_directions(self.check_directions, x, mask=ctx.mask, generator=ctx.generator)
        st["checks"] += 1
        y = ctx.output[members] if self.difference == "forward" else None  # then q queries per member, not 2 q
        jr = finite_difference_jvp(ctx.step, x, p, r, mu=self.mu, output=y, query_batch=self.query_batch, centered=True)
        jr = masked(jr, ctx.mask)
        true_slope = slopes(v[members], jr)
        decay = self.check_decay
        st["check_norm"] = decay * float(st["check_norm"]) + float(true_slope.pow(2).sum())
        candidates = {"emulator": grad[members]}
        if self.transpose:
            candidates["transpose"] = self._transposed(ctx, v, members)
        if self.stencil and st["stencil"] is not None:  # fitted to earlier checks only: held out here
            candidates["stencil"] = masked(stencil_vjp(st["stencil"], x, v[members], self._boundary()), ctx.mask)
        keys = {"emulator": "check_error", "transpose": "transpose_error", "stencil": "stencil_error"}
        residuals = {n: running_residual(st, keys[n], true_slope, slopes(g, r), decay) for n, g in candidates.items()}
        update_shrink(st, true_slope, r, grad[members], self._fallback(v[members]), decay)
        if self.stencil:  # scored already: now they refit it (cells from its own seed: the run's stream untouched)
            args = (x, r, jr, self._boundary(), ctx.mask, st["checks"], self.stencil_taps)
            st["stencil"] = update_stencil(st["stencil"], *args)
        if self.tangent_weight:  # and may teach the emulator
            repeated = [t.repeat_interleave(self.check_directions, 0) for t in (x, p)]
            st["probes"] = [*repeated, r.flatten(0, 1), jr.flatten(0, 1)]
        bars = {n: self.stencil_max_residual if n == "stencil" else self.max_residual for n in residuals}
        passing = [n for n in residuals if residuals[n] <= bars[n]]  # NaN fails
        best = min(passing or residuals, key=lambda n: residuals[n] if math.isfinite(residuals[n]) else math.inf)
        st["last_residual"] = residuals[best]
        st["mode"] = best if passing else "fallback"
        st["failed_checks"] += int(st["mode"] == "fallback")
