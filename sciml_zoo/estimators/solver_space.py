"""One autograd function around a black-box step, with a zeroth-order backward.

In solver-in-the-loop training (Um et al. 2020) a correction network follows
every solver step and the loss covers an ``n``-step unrolled trajectory. The
network is differentiable; only the solver is a black box. :func:`make_zo_step`
wraps the black-box step in a :class:`torch.autograd.Function` whose backward
returns the chosen :class:`~sciml_zoo.estimators.base.SolverSpaceEstimator`'s
estimate of ``J^T v`` (``J = d step / d state`` at the step's input) from
solver queries only, while everything else is exact backpropagation: the
solver-input-space estimation of Ma et al. 2024 (arXiv 2404.11766).

Forward-time probes (``prepare``) need no cotangent, so they go out as one
batched call with the forward step's inputs; they are skipped when no gradient
is needed (``torch.no_grad`` or a state that does not require grad). All
randomness comes from the ``generator`` of the :class:`ZOStep`, which the
training loop sets at every iteration.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators.base import ProbeContext, SolverSpaceEstimator
from sciml_zoo.estimators.probes import Agreement, agreement, check_step_size
from sciml_zoo.estimators.registry import as_estimator
from sciml_zoo.solver import StepCounter, StepFn, counting

__all__ = ["ZOStep", "compare_vjp", "exact_vjp", "make_zo_step", "vjp_estimate"]


class _ZOFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, state: Tensor, params: Tensor, zo: ZOStep) -> Tensor:  # type: ignore[override]
        output = zo.step(state, params)
        probe = ProbeContext(zo.step, state.detach(), params.detach(), output.detach(), zo.mask, zo.generator)
        ctx.zo, ctx.probe = zo, probe
        ctx.data = zo.estimator.prepare(probe)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        grad = ctx.zo.estimator.vjp(ctx.probe, ctx.data, grad_output)
        ctx.data = ctx.probe = None
        return grad, None, None


class ZOStep:
    """A black-box step whose backward returns a zeroth-order ``J^T v``.

    Built by :func:`make_zo_step`; call it like the step it wraps. Set
    :attr:`generator` to the run's generator before each iteration.
    :meth:`state_dict` / :meth:`load_state_dict` carry the estimator's per-run
    state (fits, counters) through checkpoints.
    """

    def __init__(
        self,
        step: StepFn,
        estimator: SolverSpaceEstimator,
        *,
        counter: StepCounter | None,
        mask: Tensor | None,
        generator: torch.Generator | None,
    ) -> None:
        self.step = counting(step, counter) if counter is not None else step
        self.estimator = estimator
        self.mask = None if mask is None else mask.bool()
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self._checked = False
        self.__name__ = f"zo_step({estimator.name}, {getattr(step, '__name__', 'step')})"

    def reset(self) -> None:
        """Drop cached Jacobian fits (a new batch starts)."""
        self.estimator.reset()

    def state_dict(self) -> dict[str, Any]:
        return self.estimator.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.estimator.load_state_dict(state)

    def __call__(self, state: Tensor, params: Tensor) -> Tensor:
        if self.estimator.blocks_gradient or not (torch.is_grad_enabled() and state.requires_grad):
            return self.step(state, params)
        if not self._checked:  # fail at first use, not in the backward
            if self.mask is not None and tuple(self.mask.shape) != tuple(state.shape[1:]):
                raise ConfigError(
                    f"mask of shape {tuple(self.mask.shape)} does not match states {tuple(state.shape)}; "
                    "give a (C, *spatial) bool mask"
                )
            mu = self.estimator.relative_step()
            if mu is not None:
                check_step_size(state, mu)
            self._checked = True
        return _ZOFunction.apply(state, params, self)


def make_zo_step(
    step: StepFn,
    estimator: SolverSpaceEstimator | str,
    *,
    counter: StepCounter | None = None,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> ZOStep:
    """Wrap a black-box step so that backprop through it uses a ZO ``J^T v``.

    Args:
        step: ``(state (B, C, *spatial), params (B, P)) -> state``, typically
            :func:`sciml_zoo.solver.black_box` of a solver.
        estimator: a solver-space estimator object (e.g. ``Banded(radius=1)``)
            or a registry name with default options. The object is used as
            given (its per-run state included); pass ``est.fresh()`` for a new run.
        counter: if given, every solver sample-step (forward and probes) is counted.
        mask: ``(C, *spatial)`` bool: perturb, fit and return valid entries only.
        generator: source of all random probes (default: a fixed seed 0).

    Returns:
        A :class:`ZOStep`. Its forward output equals ``step(state, params)``;
        its backward gives the estimated ``J^T v`` for ``state`` and no
        gradient for ``params``. With ``stop-gradient`` the output carries no
        graph at all.

    Raises:
        ConfigError: unknown name, or a weight-space estimator.
    """
    est = as_estimator(estimator)
    if not isinstance(est, SolverSpaceEstimator):
        raise ConfigError(f"estimator {est.name!r} works in weight space; a ZO step needs a solver-space estimator")
    return ZOStep(step, est, counter=counter, mask=mask, generator=generator)


def vjp_estimate(
    step: StepFn,
    state: Tensor,
    params: Tensor,
    v: Tensor,
    estimator: SolverSpaceEstimator | str,
    *,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    counter: StepCounter | None = None,
) -> Tensor:
    """One-shot estimate of ``J^T v`` ``(B, C, *spatial)`` at ``state`` (diagnostics).

    ``step`` is only queried, under ``torch.no_grad``.
    """
    zo = make_zo_step(_no_grad(step), estimator, counter=counter, mask=mask, generator=generator)
    state, params = state.detach(), params.detach()
    with torch.no_grad():
        output = zo.step(state, params)
        mu = zo.estimator.relative_step()
        if mu is not None:
            check_step_size(state, mu)
        probe = ProbeContext(zo.step, state, params, output, zo.mask, zo.generator)
        return zo.estimator.vjp(probe, zo.estimator.prepare(probe), v.detach())


def _no_grad(step: StepFn) -> StepFn:
    def wrapped(state: Tensor, params: Tensor) -> Tensor:
        with torch.no_grad():
            return step(state.detach(), params.detach())

    return wrapped


def exact_vjp(step: StepFn, state: Tensor, params: Tensor, v: Tensor) -> Tensor:
    """``J^T v`` by autograd through a differentiable ``step``, ``(B, C, *spatial)``."""
    with torch.enable_grad():
        x = state.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(step(x, params.detach()), x, grad_outputs=v)
    return grad


def compare_vjp(
    step: StepFn,
    state: Tensor,
    params: Tensor,
    v: Tensor,
    estimator: SolverSpaceEstimator | str,
    *,
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Agreement:
    """Cosine and relative error ``(B,)`` of :func:`vjp_estimate` against :func:`exact_vjp`."""
    est = vjp_estimate(step, state, params, v, estimator, mask=mask, generator=generator)
    return agreement(est, exact_vjp(step, state, params, v))
