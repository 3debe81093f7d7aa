"""Samples of a black-box step's Jacobian, and linear models fitted to them.

Finite differences give Jacobian-vector products ``J u`` of a black-box step
from batched solver queries (:func:`finite_difference_jvp`, with the relative
step checked against round-off by :func:`check_step_size`). Two kinds of model
turn such samples into ``J^T v``: the low-rank projection onto the probed
directions (:func:`lowrank_vjp`, Ma et al. 2024), and a fitted convolution.

**Stencil models.** A PDE time step is (mostly) local: output cell ``x`` depends on the input near
``x`` through the same discretisation stencil everywhere. So its Jacobian
``J = d step / d state`` is well described by a ``k x k`` convolution mapping
``C`` channels to ``C`` channels, whose ``C * C * k * k`` coefficients can be
fitted by least squares from a *few* finite-difference probes ``y_p ~ J u_p``:
each probe of a ``(C, H, W)`` state yields ``C * H * W`` equations. The fitted
model is linear, so its exact transpose (autograd of the convolution) gives
``J^T v`` for any ``v``; see :mod:`sciml_zoo.estimators.solver_space`.

Spatial variation enters through ``features``: the kernels are blended by
per-cell features of the state, ``(J u)(x) = sum_m phi_m(x) (K_m * u)(x)``
with ``phi = [1]`` (``"constant"``), ``[1, s_c]`` (``"state"``: an advection
stencil is linear in the local velocity) or ``[1, s_c, s_c s_c']``
(``"quadratic"``: also a cubic reaction term). The features are recomputed
from the current state when a fitted model is reused at a later step.
(Per-cell diagonal corrections and per-cell kernels fitted over local windows
were tried as well; they gained nothing on the wake flow and amplified misfit
elsewhere, so they are not offered.)

The pressure projection of an incompressible solver is not local; a wider
kernel (``k = 5``) captures more of it. This construction is ours: it is the
structured counterpart of the random input-space projections of Ma et al.
2024 (arXiv 2404.11766).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sciml_zoo.solver import StepFn

__all__ = [
    "BOUNDARIES",
    "FEATURE_SETS",
    "StencilModel",
    "check_step_size",
    "finite_difference_jvp",
    "fit_stencil",
    "lowrank_vjp",
    "random_directions",
    "state_features",
]

BOUNDARIES = ("zeros", "circular", "replicate", "reflect")
"""How the fitted convolution pads the state (match the solver's boundary)."""
FEATURE_SETS = ("constant", "state", "quadratic")
"""Per-cell features that blend the fitted kernels (see the module docstring)."""


def check_step_size(state: Tensor, mu: float, *, factor: float = 1e3) -> Tensor:
    """Absolute finite-difference steps ``h = mu * rms(state)``, checked against round-off.

    A difference ``step(x + h u) - step(x - h u)`` carries round-off of about
    ``eps * max|state|``; it is meaningful only if ``h >> eps * max|state|``.

    Args:
        state: ``(B, C, H, W)`` state at which differences are taken.
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


def random_directions(
    num: int, state: Tensor, *, mask: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Gaussian directions ``(B, num, C, H, W)``, zero off ``mask``, unit RMS on it."""
    u = torch.randn(
        (state.shape[0], num, *state.shape[1:]),
        generator=generator,
        dtype=state.dtype,
        device=state.device,
    )
    count = state[0].numel()
    if mask is not None:
        u = u * mask.to(u.device)
        count = max(int(mask.sum()), 1)
    return u / u.pow(2).flatten(2).sum(-1).div(count).sqrt().clamp_min(1e-30)[..., None, None, None]


def finite_difference_jvp(
    step: StepFn,
    state: Tensor,
    params: Tensor,
    tangents: Tensor,
    *,
    mu: float,
    output: Tensor | None = None,
    query_batch: int | None = None,
) -> Tensor:
    """``J u`` ``(B, n, C, H, W)`` for ``tangents`` ``u`` ``(B, n, C, H, W)`` from solver queries.

    Central differences ``(step(x + h u) - step(x - h u)) / 2h`` (``2 n B``
    sample-steps), or forward differences against ``output = step(x)`` when it
    is given (``n B``). The perturbed states go to ``step`` stacked along the
    batch, direction-major, as one call (or chunks of ``query_batch`` rows).
    """
    b, n = tangents.shape[:2]
    h = check_step_size(state, mu).to(state.dtype).view(b, 1, 1, 1, 1)
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


def lowrank_vjp(tangents: Tensor, responses: Tensor, cotangent: Tensor) -> Tensor:
    """Least-squares ``J^T v ~ U (U^T U)^+ Y^T v`` per batch member, ``(B, C, H, W)``.

    With ``Y = J U`` this is exactly ``P_U J^T v``, the projection of the true
    VJP onto the span of the probed directions ``U`` ``(B, q, C, H, W)``
    (Ma et al. 2024 average instead; least squares is exact once ``U`` spans).
    """
    u, y = tangents.flatten(2).double(), responses.flatten(2).double()
    coef = torch.linalg.pinv(u @ u.transpose(1, 2), hermitian=True)
    coef = coef @ (y @ cotangent.flatten(1).double()[..., None])
    return (u.transpose(1, 2) @ coef)[..., 0].reshape(cotangent.shape).to(cotangent.dtype)


def _pad(x: Tensor, kernel_size: int, boundary: str) -> Tensor:
    r = kernel_size // 2
    mode = "constant" if boundary == "zeros" else boundary
    return F.pad(x, (r, r, r, r), mode=mode)


def state_features(state: Tensor, feature_set: str, center: Tensor, scale: Tensor) -> Tensor:
    """Per-cell features ``(B, M, H, W)`` of a state ``(B, C, H, W)``.

    ``center`` and ``scale`` ``(B, C, 1, 1)`` normalise the channels; they are
    fixed at fit time so that a reused model means the same thing later.
    """
    ones = torch.ones_like(state[:, :1])
    if feature_set == "constant":
        return ones
    z = (state - center) / scale
    parts = [ones, z]
    if feature_set == "quadratic":
        c = state.shape[1]
        parts += [z[:, i : i + 1] * z[:, j : j + 1] for i in range(c) for j in range(i, c)]
    return torch.cat(parts, dim=1)


@dataclass(frozen=True)
class StencilModel:
    """A fitted linear model of a step's Jacobian.

    Attributes:
        kernel: ``(B, M, C, C, k, k)`` kernels ``K[b, m, c_out, c_in]``, one set
            per batch member and feature (cross-correlation, like ``conv2d``).
        boundary: padding mode, one of :data:`BOUNDARIES`.
        feature_set: one of :data:`FEATURE_SETS`.
        center: ``(B, C, 1, 1)`` channel means used to normalise features.
        scale: ``(B, C, 1, 1)`` channel standard deviations, same purpose.
    """

    kernel: Tensor
    boundary: str
    feature_set: str
    center: Tensor
    scale: Tensor

    def features(self, state: Tensor) -> Tensor:
        """Features ``(B, M, H, W)`` of ``state`` with the fit-time normalisation."""
        return state_features(state, self.feature_set, self.center, self.scale)

    def jvp(self, tangent: Tensor, features: Tensor) -> Tensor:
        """Apply the model: ``J u`` for ``u`` ``(B, C, H, W)`` or ``(B, P, C, H, W)``.

        ``features`` ``(B, M, H, W)`` come from :meth:`features` of the state.
        """
        t = tangent if tangent.dim() == 5 else tangent[:, None]
        b, p, c, h, w = t.shape
        m, k = self.kernel.shape[1], self.kernel.shape[-1]
        x = _pad(t.transpose(0, 1).reshape(p * b, c, h, w), k, self.boundary)
        x = x.reshape(p, b * c, x.shape[-2], x.shape[-1])
        out = F.conv2d(x, self.kernel.reshape(b * m * c, c, k, k), groups=b)
        out = out.reshape(p, b, m, c, h, w)
        out = out[:, :, 0] if m == 1 else (out * features[None, :, :, None]).sum(2)
        out = out.transpose(0, 1)
        return out if tangent.dim() == 5 else out[:, 0]

    def vjp(self, cotangent: Tensor, features: Tensor) -> Tensor:
        """Exact transpose of :meth:`jvp`: ``J^T v`` for ``v`` ``(B, C, H, W)``."""
        with torch.enable_grad():
            tangent = torch.zeros_like(cotangent, requires_grad=True)
            out = self.jvp(tangent, features)
            (grad,) = torch.autograd.grad(out, tangent, grad_outputs=cotangent)
        return grad


def fit_stencil(
    state: Tensor,
    tangents: Tensor,
    responses: Tensor,
    *,
    kernel_size: int = 5,
    boundary: str = "zeros",
    feature_set: str = "constant",
    mask: Tensor | None = None,
    ridge: float = 1e-6,
    per_sample: bool = True,
) -> StencilModel:
    """Least-squares fit of a :class:`StencilModel` to probes ``responses ~ J tangents``.

    Solves, per batch member and output channel, the normal equations of
    ``min_K sum_p sum_x |y_p(x) - (K u_p)(x)|^2 + lam |K - I|^2`` (rows at
    invalid outputs dropped). ``N = M * C * k * k`` unknowns per output channel
    need ``P * H * W >= N`` equations, otherwise the ridge decides.

    Args:
        state: the step's input ``(B, C, H, W)`` (for the features).
        tangents: probe directions ``u_p``, ``(B, P, C, H, W)``.
        responses: finite differences ``(step(x + h u) - step(x - h u)) / 2h``,
            same shape.
        kernel_size: odd stencil width ``k``.
        boundary: padding of the convolution, one of :data:`BOUNDARIES`.
        feature_set: kernel blending, one of :data:`FEATURE_SETS`.
        mask: optional ``(C, H, W)`` bool; equations at invalid outputs are dropped.
        ridge: Tikhonov weight ``lam`` relative to the Gram matrix's mean
            diagonal, shrinking towards the identity kernel ``I``.
        per_sample: one model per batch member (else one shared model).

    Returns:
        The fitted model, in the state's dtype (Gram in that dtype, solve in float64).
    """
    b, p, c, h, w = tangents.shape
    k = kernel_size
    dtype = state.dtype
    center = state.mean(dim=(2, 3), keepdim=True)
    scale = state.std(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    phi = state_features(state, feature_set, center, scale).flatten(2)  # (B, M, HW)
    m = phi.shape[1]
    cols = F.unfold(_pad(tangents.flatten(0, 1), k, boundary), k).reshape(b, p, c * k * k, h * w)
    design = (phi[:, None, :, None] * cols[:, :, None]).reshape(b, p, m * c * k * k, h * w)
    design = design.transpose(1, 2).flatten(2)  # (B, N, R = P*HW)
    n = design.shape[1]
    target = responses.transpose(1, 2).flatten(2)  # (B, C, R)
    gram_all = design @ design.transpose(1, 2)
    if mask is None:
        gram = gram_all[:, None].expand(b, c, n, n)
    else:
        valid = mask.to(state.device).flatten(1).repeat(1, p)  # (C, R)
        target = target * valid
        grams = []
        for ch in range(c):  # subtract the (few) invalid rows, or sum the valid ones
            if int(valid[ch].sum()) * 2 >= valid.shape[1]:
                dropped = design[:, :, ~valid[ch]]
                grams.append(gram_all - dropped @ dropped.transpose(1, 2))
            else:
                kept = design[:, :, valid[ch]]
                grams.append(kept @ kept.transpose(1, 2))
        gram = torch.stack(grams, 1)
    rhs = (design[:, None] @ target[..., None])[..., 0]  # (B, C, N)
    gram, rhs = gram.double(), rhs.double()
    if not per_sample:
        gram, rhs = gram.sum(0, keepdim=True), rhs.sum(0, keepdim=True)
    prior = torch.zeros(c, m, c, k, k, dtype=torch.float64, device=state.device)
    for ch in range(c):
        prior[ch, 0, ch, k // 2, k // 2] = 1.0
    lam = ridge * gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-300)
    eye = torch.eye(n, dtype=torch.float64, device=state.device)
    # Cholesky (the system is SPD); batched LU of torch 2.13 + MKL can hang with 2 threads
    chol = torch.linalg.cholesky((gram + lam[..., None, None] * eye).contiguous())
    rhs = rhs + lam[..., None] * prior.reshape(c, n)
    sol = torch.cholesky_solve(rhs[..., None], chol)[..., 0]
    kernel = sol.expand(b, c, n).reshape(b, c, m, c, k, k).transpose(1, 2).contiguous()
    return StencilModel(kernel.to(dtype), boundary, feature_set, center, scale)
