"""Zeroth-order vector-Jacobian products of a black-box solver step.

In solver-in-the-loop training (Um et al. 2020) a correction network follows
every solver step and the loss covers an ``n``-step unrolled trajectory. The
network is differentiable; only the solver is a black box. Instead of
perturbing network weights (DeepZero, Chen et al. 2024), :func:`make_zo_step`
wraps the black-box step in a :class:`torch.autograd.Function` whose backward
returns an *estimate* of ``J^T v`` (``J = d step / d state`` at the step's
input) built from solver queries only, while everything else is exact
backpropagation -- the solver-input-space estimation of Ma et al. 2024
(arXiv 2404.11766).

Estimators (``estimator=``) and their solver cost per wrapped step, in
sample-steps, for batch ``B`` (central differences; ``difference="forward"``
halves the probe cost by reusing the forward output):

================  ====================================  ==========================
name              ``J^T v`` estimate                    sample-steps per step
================  ====================================  ==========================
``stop-gradient`` ``0`` (List et al. 2024, 2402.12971)  ``B``
``identity``      ``v`` (a small step is near identity) ``B``
``rge``           ``U (U^T U)^+ Y^T v``, ``Y = J U``    ``B + 2 q B``
``identity-rge``  ``v + U (U^T U)^+ (Y - U)^T v``       ``B + 2 q B``
``stencil``       exact transpose of a fitted ``k x k`` ``B + 2 P B`` (cotangent),
                  convolution (:mod:`.jacobian_models`) ``B + 2 P B / refit_every``
                                                        (random)
================  ====================================  ==========================

``q = num_directions`` Gaussian directions per batch member, ``P =
num_probes``. ``probes="random"`` issues all probes in the *forward* pass as
one batched call of ``2 q B`` (or ``2 P B``) rows: they need no ``v``, the
backward stays solver-free, and a stencil fit can be reused for
``refit_every`` steps. ``probes="cotangent"`` (the stencil's default) issues
them in the *backward* as one batched call, with ``v`` itself as the first
direction: the same count of queries, none at all for a zero ``v``, and the
fit is weighted towards the scales ``v`` lives on. Probes are skipped when no
gradient is needed (``torch.no_grad`` or a state that does not require grad).

Measured on the PhiFlow wake step (32 x 64, float32, batch 3; scripts in the
report): against autograd, a white-noise ``v`` gets cosine 0.94 from the
stencil (``k = 5``, 2 sample-steps of probes per sample), 0.64 from
``identity`` and 0.07 from ``rge`` with 64 sample-steps -- random directions
in a 4000-dimensional state barely see ``J``. For the smooth ``v`` of a real
SOL loss, a stencil fitted to random probes points right (0.99) but has only
0.55 of the norm (white probes overweight the small scales that the pressure
projection damps); ``v``-directed probes fix this (0.996 / 0.96 with ``P = 2``),
whereas ``P = 1`` (``v`` alone) underdetermines the kernel.

Step size: ``mu`` is *relative*, the absolute step is ``mu * rms(state)`` per
batch member. The default
``1e-2`` keeps float32 round-off near ``eps / mu ~ 1e-5`` relative and the
central-difference truncation at ``O(mu^2)``; :func:`check_step_size` rejects
steps lost in round-off. For solvers with iterative inner solves the finite
differences also see the solve tolerance: keep ``mu * rms`` well above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators.jacobian_models import (
    BOUNDARIES,
    FEATURE_SETS,
    StencilModel,
    check_step_size,
    finite_difference_jvp,
    fit_stencil,
    lowrank_vjp,
    random_directions,
)
from sciml_zoo.solver import StepCounter, StepFn, counting

__all__ = [
    "ESTIMATORS",
    "VJPComparison",
    "ZOStep",
    "check_step_size",
    "compare_vjp",
    "exact_vjp",
    "make_zo_step",
    "vjp_cosine",
    "vjp_estimate",
]

_FD = {"mu": 1e-2, "difference": "central", "generator": None, "probes": "random"}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "stop-gradient": {},
    "identity": {},
    "rge": {"num_directions": 8, **_FD},
    "identity-rge": {"num_directions": 8, **_FD},
    "stencil": {
        "num_probes": 2,
        **_FD,
        "probes": "cotangent",
        "kernel_size": 5,
        "boundary": "zeros",
        "features": "constant",
        "ridge": 1e-6,
        "per_sample": True,
        "refit_every": 1,
    },
}
_COMMON: dict[str, Any] = {"mask": None, "query_batch": None}
ESTIMATORS = tuple(_DEFAULTS)
"""Valid ``estimator`` names for :func:`make_zo_step` and :func:`vjp_estimate`."""


def _options(estimator: str, options: dict[str, Any]) -> dict[str, Any]:
    """Merge and validate options; raise :class:`ConfigError` naming valid choices."""
    if estimator not in _DEFAULTS:
        raise ConfigError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    valid = {**_COMMON, **_DEFAULTS[estimator]}
    bad = sorted(set(options) - set(valid))
    if bad:
        raise ConfigError(f"option(s) {bad} not valid for estimator {estimator!r}; valid: {sorted(valid)}")
    opts = {**valid, **options}

    def need(ok: bool, key: str, fix: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={opts[key]!r} for estimator {estimator!r}: {fix}")

    def is_int(key: str, low: int) -> bool:
        return isinstance(opts[key], int) and not isinstance(opts[key], bool) and opts[key] >= low

    for key in ("num_directions", "num_probes", "refit_every"):
        if key in opts:
            need(is_int(key, 1), key, "use an integer >= 1")
    need(opts["query_batch"] is None or is_int("query_batch", 1), "query_batch", "use None or >= 1")
    mask = opts["mask"]
    need(
        mask is None or (isinstance(mask, Tensor) and mask.dtype == torch.bool and mask.dim() == 3),
        "mask",
        "use None or a (C, H, W) bool tensor",
    )
    if "mu" in opts:
        mu = opts["mu"]
        need(isinstance(mu, (int, float)) and 0 < mu < 1, "mu", "use a relative step in (0, 1)")
        need(opts["difference"] in ("central", "forward"), "difference", "use central or forward")
        need(opts["probes"] in ("random", "cotangent"), "probes", "use random or cotangent")
        need(
            opts["probes"] == "random" or opts.get("refit_every", 1) == 1,
            "refit_every",
            "cotangent probes are refitted at every backward; use refit_every=1",
        )
    if "kernel_size" in opts:
        need(is_int("kernel_size", 1) and opts["kernel_size"] % 2 == 1, "kernel_size", "use odd")
        need(opts["boundary"] in BOUNDARIES, "boundary", f"use one of {BOUNDARIES}")
        need(opts["features"] in FEATURE_SETS, "features", f"use one of {FEATURE_SETS}")
        need(isinstance(opts["ridge"], (int, float)) and opts["ridge"] >= 0, "ridge", "use >= 0")
    return opts


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    return x if mask is None else x * mask.to(x.device)


class _Estimator:
    """Forward-time probing (``prepare``) and backward-time ``J^T v`` (``vjp``)."""

    def __init__(self, name: str, opts: dict[str, Any]) -> None:
        self.name, self.opts = name, opts
        self.mask = opts["mask"]
        self._model: StencilModel | None = None
        self._since_fit = 0
        self._key: tuple[Any, ...] | None = None
        self._params: Tensor | None = None

    def reset(self) -> None:
        """Forget a cached stencil fit (``refit_every > 1``)."""
        self._model = None

    def _probe(
        self, data: tuple[StepFn, Tensor, Tensor, Tensor], num: int, v: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Directions ``(B, num, C, H, W)`` (the first along ``v`` if given) and their ``J u``."""
        step, state, params, output = data
        gen = self.opts["generator"]
        u = random_directions(num, state, mask=self.mask, generator=gen)
        if v is not None:  # unit-RMS cotangent as the first direction (random where v == 0)
            count = state[0].numel() if self.mask is None else max(int(self.mask.sum()), 1)
            rms = v.flatten(1).pow(2).sum(1).div(count).sqrt().view(-1, 1, 1, 1)
            u[:, 0] = torch.where(rms > 0, v / rms.clamp_min(1e-30), u[:, 0])
        forward = self.opts["difference"] == "forward"
        y = finite_difference_jvp(
            step,
            state,
            params,
            u,
            mu=self.opts["mu"],
            output=output if forward else None,
            query_batch=self.opts["query_batch"],
        )
        return u, y

    def _fit(self, state: Tensor, u: Tensor, y: Tensor) -> StencilModel:
        return fit_stencil(
            state,
            u,
            y,
            kernel_size=self.opts["kernel_size"],
            boundary=self.opts["boundary"],
            feature_set=self.opts["features"],
            mask=self.mask,
            ridge=self.opts["ridge"],
            per_sample=self.opts["per_sample"],
        )

    def prepare(self, step: StepFn, state: Tensor, params: Tensor, output: Tensor) -> Any:
        """Forward-time probes: everything the backward needs, without ``v``."""
        if self.name in ("stop-gradient", "identity"):
            return None
        data = (step, state, params, output)
        if self.opts["probes"] == "cotangent":
            return data  # probed in the backward, along v
        if self.name in ("rge", "identity-rge"):
            return self._probe(data, self.opts["num_directions"])
        key = (state.shape, state.dtype, state.device)
        if (
            self._model is None
            or self._since_fit >= self.opts["refit_every"]
            or key != self._key
            or not torch.equal(params, self._params)
        ):
            self._model = self._fit(state, *self._probe(data, self.opts["num_probes"]))
            self._since_fit, self._key, self._params = 0, key, params.detach().clone()
        self._since_fit += 1
        return self._model, self._model.features(state)

    def vjp(self, data: Any, v: Tensor) -> Tensor:
        """Backward-time ``J^T v`` ``(B, C, H, W)`` (cotangent probes are issued here)."""
        if self.name == "stop-gradient":
            return torch.zeros_like(v)
        v = _masked(v, self.mask)
        if self.name == "identity" or not bool(v.any()):
            return v  # a zero cotangent needs no query
        if self.opts["probes"] == "cotangent":
            state = data[1]
            num = self.opts["num_probes" if self.name == "stencil" else "num_directions"]
            u, y = self._probe(data, num, v)
            if self.name == "stencil":
                model = self._fit(state, u, y)
                return _masked(model.vjp(v, model.features(state)), self.mask)
            data = (u, y)
        if self.name == "stencil":
            model, features = data
            return _masked(model.vjp(v, features), self.mask)
        u, y = data
        if self.name == "rge":
            return lowrank_vjp(u, y, v)
        return v + lowrank_vjp(u, y - u, v)


class _ZOFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, state: Tensor, params: Tensor, zo: ZOStep) -> Tensor:  # type: ignore[override]
        output = zo.step(state, params)
        ctx.zo = zo  # detached copies below: no reference cycle through ctx
        ctx.data = zo.estimator.prepare(zo.step, state.detach(), params.detach(), output.detach())
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        grad = ctx.zo.estimator.vjp(ctx.data, grad_output)
        ctx.data = None
        return grad, None, None


class ZOStep:
    """A black-box step whose backward returns a zeroth-order ``J^T v``.

    Built by :func:`make_zo_step`; call it like the step it wraps. With
    ``refit_every > 1`` call :meth:`reset` when a new batch starts (a change of
    shape or parameters also triggers a refit).
    """

    def __init__(self, step: StepFn, estimator: str, opts: dict[str, Any], counter: StepCounter | None) -> None:
        self.step = counting(step, counter) if counter is not None else step
        self.estimator = _Estimator(estimator, opts)
        self._checked = False
        self.__name__ = f"zo_step({estimator}, {getattr(step, '__name__', 'step')})"

    def reset(self) -> None:
        """Drop the cached Jacobian model."""
        self.estimator.reset()

    def __call__(self, state: Tensor, params: Tensor) -> Tensor:
        if self.estimator.name == "stop-gradient" or not (torch.is_grad_enabled() and state.requires_grad):
            return self.step(state, params)
        if not self._checked and "mu" in self.estimator.opts:
            check_step_size(state, self.estimator.opts["mu"])  # fail at first use, not in backward
            self._checked = True
        return _ZOFunction.apply(state, params, self)


def make_zo_step(step: StepFn, *, estimator: str, counter: StepCounter | None = None, **options: Any) -> ZOStep:
    """Wrap a black-box step so that backprop through it uses a ZO ``J^T v``.

    Args:
        step: ``(state (B, C, H, W), params (B, P)) -> state``, typically
            :func:`sciml_zoo.solver.black_box` of a solver.
        estimator: one of :data:`ESTIMATORS` (see the module docstring).
        counter: if given, every solver sample-step (forward and probes) is
            counted in it.
        **options: keyword-only hyper-parameters, defaults in brackets.
            Query-based estimators: ``mu`` (relative step [1e-2]),
            ``difference`` ("central" [default] or "forward"), ``generator``
            (a ``torch.Generator`` for the directions), ``probes``
            ("random": forward-time, or "cotangent": backward-time with
            ``v`` as the first direction; [random] for rge, [cotangent] for
            the stencil). ``rge`` and ``identity-rge``: ``num_directions``
            q [8]. ``stencil``: ``num_probes`` P [2], ``kernel_size`` k [5],
            ``boundary``
            ("zeros" [default], "circular", "replicate", "reflect": match the
            solver), ``features`` ("constant" [default], "state",
            "quadratic"), ``ridge`` [1e-6], ``per_sample`` [True],
            ``refit_every`` [1] (random probes only: reuse the fitted model
            for that many steps; measured on the wake, a fit 8 steps old
            loses under 0.005 of cosine).
            All: ``mask`` ((C, H, W) bool: perturb, fit and return valid
            entries only) and ``query_batch`` (max rows per solver call;
            default one call).

    Returns:
        A :class:`ZOStep`. Its forward output equals ``step(state, params)``;
        its backward gives the estimated ``J^T v`` for ``state`` and no
        gradient for ``params``. With ``stop-gradient`` the output carries no
        graph at all, so nothing upstream receives a gradient through it.

    Raises:
        ConfigError: unknown estimator or invalid option.
    """
    return ZOStep(step, estimator, _options(estimator, options), counter)


def vjp_estimate(
    step: StepFn,
    state: Tensor,
    params: Tensor,
    v: Tensor,
    *,
    estimator: str,
    counter: StepCounter | None = None,
    **options: Any,
) -> Tensor:
    """One-shot estimate of ``J^T v`` ``(B, C, H, W)`` at ``state`` (diagnostics).

    ``step`` is only queried (under ``torch.no_grad``); forward differences
    spend one extra call on ``step(state, params)``.
    """
    opts = _options(estimator, options)
    zo = ZOStep(_no_grad(step), estimator, opts, counter)
    state, params = state.detach(), params.detach()
    with torch.no_grad():
        output = zo.step(state, params) if opts.get("difference") == "forward" else state
        data = zo.estimator.prepare(zo.step, state, params, output)
        return zo.estimator.vjp(data, v.detach())


def _no_grad(step: StepFn) -> StepFn:
    def wrapped(state: Tensor, params: Tensor) -> Tensor:
        with torch.no_grad():
            return step(state.detach(), params.detach())

    return wrapped


def exact_vjp(step: StepFn, state: Tensor, params: Tensor, v: Tensor) -> Tensor:
    """``J^T v`` by autograd through a differentiable ``step``, ``(B, C, H, W)``."""
    with torch.enable_grad():
        x = state.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(step(x, params.detach()), x, grad_outputs=v)
    return grad


@dataclass(frozen=True)
class VJPComparison:
    """Per-batch-member agreement of an estimate with autograd, each ``(B,)``."""

    cosine: Tensor
    relative_error: Tensor


def compare_vjp(
    step: StepFn, state: Tensor, params: Tensor, v: Tensor, *, estimator: str, **options: Any
) -> VJPComparison:
    """Compare :func:`vjp_estimate` with :func:`exact_vjp` for a differentiable step."""
    exact = exact_vjp(step, state, params, v).flatten(1)
    est = vjp_estimate(step, state, params, v, estimator=estimator, **options).flatten(1)
    cos = torch.nn.functional.cosine_similarity(est, exact, dim=1, eps=1e-30)
    rel = (est - exact).norm(dim=1) / exact.norm(dim=1).clamp_min(1e-30)
    return VJPComparison(cos, rel)


def vjp_cosine(step: StepFn, state: Tensor, params: Tensor, v: Tensor, *, estimator: str, **options: Any) -> Tensor:
    """Cosine similarity ``(B,)`` of the estimated and the autograd ``J^T v``."""
    return compare_vjp(step, state, params, v, estimator=estimator, **options).cosine
