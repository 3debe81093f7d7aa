"""Finite-difference probes of a black-box step, and the agreement of two estimates.

Every query-based estimator samples Jacobian-vector products ``J u`` of the
step by finite differences (:func:`finite_difference_jvp`), with an absolute
step ``h = mu * rms(state)`` per batch member that :func:`check_step_size`
checks against round-off. States are ``(B, C, *spatial)`` with 1-3 spatial
dimensions; masks are ``(C, *spatial)`` bool.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from sciml_zoo.solver import StepFn

__all__ = [
    "Agreement",
    "agreement",
    "centered_step",
    "check_step_size",
    "cotangent_jvp",
    "finite_difference_jvp",
    "lowrank_vjp",
    "masked",
    "random_directions",
    "valid_count",
]


def masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """``x`` with entries off ``mask`` (broadcast from the right) set to 0."""
    return x if mask is None else x * mask.to(x.device, x.dtype)


def valid_count(state: Tensor, mask: Tensor | None) -> int:
    """Valid entries per batch member of a ``(B, C, *spatial)`` state."""
    return state[0].numel() if mask is None else max(int(mask.sum()), 1)


def _trailing(x: Tensor, dims: int) -> Tensor:
    return x.view(*x.shape, *([1] * dims))


def check_step_size(state: Tensor, mu: float, *, factor: float = 1e3) -> Tensor:
    """Absolute finite-difference steps ``h = mu * rms(state)``, checked against round-off.

    A difference ``step(x + h u) - step(x - h u)`` carries round-off of about
    ``eps * max|state|``; it is meaningful only if ``h >> eps * max|state|``.

    Args:
        state: ``(B, C, *spatial)`` state at which differences are taken.
        mu: relative step; ``1e-2`` suits float32.
        factor: required margin; rejects ``h < factor * eps * max|state|``.

    Returns:
        The absolute steps ``h``, shape ``(B,)``.

    Raises:
        ValueError: ``mu`` is not positive, or too small for the dtype.
    """
    if not (isinstance(mu, (int, float)) and math.isfinite(mu) and mu > 0):
        raise ValueError(f"mu={mu!r} must be a positive finite relative step (e.g. 1e-2)")
    flat = state.detach().flatten(1)
    h = mu * flat.pow(2).mean(1).sqrt().clamp_min(1e-8)
    eps = torch.finfo(state.dtype).eps
    floor = factor * eps * flat.abs().amax(1)
    if bool((h < floor).any()):
        i = int((h / floor.clamp_min(1e-300)).argmin())
        raise ValueError(
            f"mu={mu:g} gives an absolute step {float(h[i]):.3g} that {state.dtype} round-off "
            f"(~{eps:.2g} x max|state| {float(flat[i].abs().max()):.3g}) would dominate; use "
            f"mu >= {mu * float(floor[i] / h[i]):.2g} or run the solver in float64"
        )
    if mu > 0.1:
        msg = f"mu={mu:g} is large; the differences will see the step's nonlinearity"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return h


def centered_step(state: Tensor, mu: float, *, factor: float = 1e2) -> Tensor:
    """Absolute steps ``h = mu * std(state)`` per member ``(B,)``, raised above round-off, never refused.

    The spread about the member's own mean, not its RMS, sets the scale: a
    field that sits far from zero (a temperature in kelvin, a drifting gauge)
    must be perturbed on the scale of its fluctuations, or the difference sees
    the step's nonlinearity. ``h`` is raised to ``factor * eps * max|state|``
    where round-off would otherwise dominate. For the estimators' own checks,
    which must not stop a run.
    """
    flat = state.detach().flatten(1)
    h = mu * flat.std(1, unbiased=False).clamp_min(1e-8)
    return torch.maximum(h, factor * torch.finfo(state.dtype).eps * flat.abs().amax(1))


def random_directions(num: int, state: Tensor, *, mask: Tensor | None, generator: torch.Generator) -> Tensor:
    """Gaussian directions ``(B, num, C, *spatial)``, zero off ``mask``, unit RMS on it."""
    shape = (state.shape[0], num, *state.shape[1:])
    u = torch.randn(shape, generator=generator, dtype=state.dtype, device=generator.device)
    u = masked(u.to(state.device), mask)
    rms = u.pow(2).flatten(2).sum(-1).div(valid_count(state, mask)).sqrt().clamp_min(1e-30)
    return u / _trailing(rms, state.dim() - 1)


def finite_difference_jvp(
    step: StepFn,
    state: Tensor,
    params: Tensor,
    tangents: Tensor,
    *,
    mu: float,
    output: Tensor | None = None,
    query_batch: int | None = None,
    centered: bool = False,
) -> Tensor:
    """``J u`` ``(B, n, C, *spatial)`` for tangents ``u`` of the same shape, from solver queries.

    Central differences ``(step(x + h u) - step(x - h u)) / 2h`` (``2 n B``
    sample-steps), or forward differences against ``output = step(x)`` when it
    is given (``n B``). All perturbed states go to ``step`` stacked along the
    batch, direction-major, as one call (or chunks of ``query_batch`` rows).
    Steps ``mu * rms(state)`` (:func:`check_step_size`), or ``mu * std(state)``
    with ``centered`` (:func:`centered_step`).
    """
    b, n = tangents.shape[:2]
    h = centered_step(state, mu) if centered else check_step_size(state, mu)
    h = _trailing(h.to(state.dtype), state.dim())
    signed = tangents if output is not None else torch.cat([tangents, -tangents], 1)
    rows = (state[:, None] + h * signed).transpose(0, 1).reshape(-1, *state.shape[1:])
    rows_params = params.repeat(signed.shape[1], 1)
    if query_batch is None or len(rows) <= query_batch:
        out = step(rows, rows_params)
    else:
        chunks = range(0, len(rows), query_batch)
        out = torch.cat([step(rows[i : i + query_batch], rows_params[i : i + query_batch]) for i in chunks])
    out = out.reshape(signed.shape[1], b, *state.shape[1:]).transpose(0, 1)
    if output is not None:
        return (out - output[:, None]) / h
    return (out[:, :n] - out[:, n:]) / (2 * h)


def cotangent_jvp(
    step: StepFn, state: Tensor, params: Tensor, v: Tensor, *, mu: float, output: Tensor, query_batch: int | None
) -> Tensor:
    """``J v`` ``(B, C, *spatial)`` along each member's own ``v`` (scaled to unit RMS and back), one query each.

    Equal to ``J^T v`` for a self-adjoint step (diffusion, a pressure
    projection, a symmetric implicit solve), whatever its coupling range.
    """
    rms = v.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-30).view(-1, *[1] * (v.dim() - 1))
    jv = finite_difference_jvp(
        step, state, params, (v / rms)[:, None], mu=mu, output=output, query_batch=query_batch, centered=True
    )
    return jv[:, 0] * rms


def lowrank_vjp(tangents: Tensor, responses: Tensor, cotangent: Tensor) -> Tensor:
    """Least-squares ``J^T v ~ U (U^T U)^+ Y^T v`` per batch member, shaped like ``v``.

    With ``Y = J U`` this is exactly ``P_U J^T v``, the projection of the true
    VJP onto the span of the probed directions ``U`` ``(B, q, C, *spatial)``
    (Ma et al. 2024 average instead; least squares is exact once ``U`` spans).
    """
    u, y = tangents.flatten(2).double(), responses.flatten(2).double()
    coef = torch.linalg.pinv(u @ u.transpose(1, 2), hermitian=True)
    coef = coef @ (y @ cotangent.flatten(1).double()[..., None])
    return (u.transpose(1, 2) @ coef)[..., 0].reshape(cotangent.shape).to(cotangent.dtype)


@dataclass(frozen=True)
class Agreement:
    """Per-row agreement of an estimate with a reference, each ``(B,)``."""

    cosine: Tensor
    relative_error: Tensor


def agreement(estimate: Tensor, reference: Tensor) -> Agreement:
    """Cosine and relative error ``|est - ref| / |ref|`` per leading row (THE formula)."""
    est, ref = estimate.flatten(1).double(), reference.flatten(1).double()
    cos = torch.nn.functional.cosine_similarity(est, ref, dim=1, eps=1e-30)
    rel = (est - ref).norm(dim=1) / ref.norm(dim=1).clamp_min(1e-30)
    return Agreement(cos, rel)
