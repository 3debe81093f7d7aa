"""A stencil model of the step's Jacobian, fitted to the held-out check's own probes and kept across checks.

The ``emulator`` estimator's check measures ``J r`` along a few random directions ``r`` at a few states every
``check_every`` steps. A PDE step's Jacobian is local and, up to the local state, the same everywhere, so one
linear model ``(J u)(x) = sum_m phi_m(x) (K_m * u)(x)`` (as :class:`~sciml_zoo.estimators.stencil.StencilModel`,
features ``phi = [1, z_c, z_c z_c']`` of the state, each channel normalised by the mean and spread of the
first check's states, so that the coefficients are one quadratic function of the local state for every
member) fitted by least squares to the probes of every check so far, earlier checks weighted by 0.9, gives
``J^T v`` at any state by its exact transpose: no solver queries, one small convolution per product. This is
the lagged Jacobian of Jacobian-free Newton-Krylov codes (Knoll & Keyes 2004, J. Comput. Phys. 193),
refreshed from data the check collects anyway; it is scored on the next check's new directions before it can
be used, so its error estimate is always held out. The step's parameters are not features: where they
change the Jacobian much between members, the check sees a larger error and the stencil is not used.

Unknowns per output channel: ``N = M C k^d`` (``M = 1 + C + C (C + 1) / 2`` features; two channels,
``k^d = 25`` taps, 5 x 5 in 2D or 25 wide in 1D: 300). Each check adds at most ``8 N`` rows (cells drawn at
random), so a refit costs ``O(N^3)`` whatever the grid. The running normal equations (float64) are the whole
state: checkpointed, resumed exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sciml_zoo.checkpoint import CheckpointFieldError
from sciml_zoo.estimators.stencil import _CONV, _pad, _patches, state_features
from sciml_zoo.nn.emulator import emulator_dtype

__all__ = ["TAPS", "check_stencil_state", "stencil_kernel_size", "stencil_vjp", "update_stencil"]

_FEATURES = "quadratic"
_ROWS_PER_UNKNOWN = 8
_RIDGE = 1e-6
_DECAY = 0.9
"""Weight of the earlier checks' equations: about 10 checks of memory (20 members' states), where a
quadratic blend needs more states than one check's two (the Jacobian itself does not change)."""


TAPS = 25
"""Default taps per pair of channels (the ``emulator``'s ``stencil_taps``): 25 wide in 1D, 5 x 5 in 2D, 3 x 3 x 3
in 3D (the narrowest), ``N`` at most about 1,000. A step of ``s`` explicit substeps couples ``s`` cells each side;
a 1D model as narrow as a 2D one would miss that coupling at no saving (shallow water: 4 substeps; 25 wide against
5: 0.0095 against 0.0096)."""


def stencil_kernel_size(shape: tuple[int, ...], taps: int = TAPS) -> int:
    """Stencil width for a grid ``shape``: the widest odd ``k`` with ``k^d <= taps`` (3 at least), and no wider
    than the grid (periodic padding wraps once at most)."""
    k = 3
    while (k + 2) ** len(shape) <= taps:
        k += 2
    return max(1, min(k, min(shape) - (1 - min(shape) % 2)))


def update_stencil(
    fit: dict[str, Tensor] | None,
    x: Tensor,
    r: Tensor,
    jr: Tensor,
    boundary: str,
    mask: Tensor | None,
    seed: int,
    taps: int = TAPS,
) -> dict[str, Tensor]:
    """Add one check's probes to the running normal equations and solve them again.

    Args:
        fit: the previous state (``None`` before the first check).
        x: the members' states ``(K, C, *spatial)``.
        r, jr: directions and their measured ``J r``, ``(K, q, C, *spatial)``.
        boundary: the model's padding (the emulator's, i.e. the correction network's).
        mask: optional ``(C, *spatial)`` bool; only cells valid in every channel give rows.
        seed: draws the cells used, from a generator of its own (the caller's random stream is untouched).
        taps: the stencil's size, :func:`stencil_kernel_size`; a fit of another size is replaced, not extended.

    Returns:
        ``{"gram": (N, N), "rhs": (C, N), "kernel": (M, C, C, *[k] * d), "center", "scale": (1, C, 1, ...)}``,
        in float64; ``fit`` itself where this check's equations are not finite (a solver fault) or singular.
    """
    k_members, q, c = r.shape[:3]
    shape = tuple(r.shape[3:])
    ndim, ks = len(shape), stencil_kernel_size(shape, taps)
    m = 1 + c + c * (c + 1) // 2  # the quadratic features
    n = m * c * ks**ndim
    fresh = fit is None or fit["gram"].shape != (n, n)
    if fresh:  # the normalisation is fixed by the first check: the features mean the same thing ever after
        pooled = (0, *range(2, 2 + ndim))
        center, scale = x.double().mean(dim=pooled, keepdim=True), x.double().std(dim=pooled, keepdim=True)
        scale = torch.maximum(scale, 1e-3 * center.abs()).clamp_min(1e-12)
    else:
        center, scale = fit["center"], fit["scale"]  # type: ignore[index]
    phi = state_features(x.double(), _FEATURES, center, scale).flatten(2)  # (K, M, X)
    cells = phi.shape[2]
    valid = torch.arange(cells, device=x.device) if mask is None else mask.all(0).flatten().nonzero()[:, 0]
    take = min(len(valid), -(-_ROWS_PER_UNKNOWN * n // (k_members * q)))
    order = torch.randperm(len(valid), generator=torch.Generator().manual_seed(seed))[:take].to(valid.device)
    sel = valid[order]
    cols = _patches(_pad(r.flatten(0, 1).double(), ks, boundary, ndim), ks, shape).reshape(k_members, q, -1, cells)
    design = (phi[:, None, :, None, sel] * cols[:, :, None, :, sel]).reshape(k_members, q, n, take)
    design = design.permute(2, 0, 1, 3).reshape(n, -1)  # (N, rows)
    target = jr.double().flatten(3)[..., sel].permute(2, 0, 1, 3).reshape(c, -1)  # (C, rows)
    gram, rhs = design @ design.T, target @ design.T
    if not bool(torch.isfinite(gram).all() and torch.isfinite(rhs).all()):
        return fit  # type: ignore[return-value]
    if not fresh:
        gram, rhs = _DECAY * fit["gram"] + gram, _DECAY * fit["rhs"] + rhs  # type: ignore[index]
    prior = torch.zeros(c, m, c, ks**ndim, dtype=torch.float64, device=x.device)
    for ch in range(c):  # shrink towards the identity kernel
        prior[ch, 0, ch, ks**ndim // 2] = 1.0
    lam = _RIDGE * gram.diagonal().mean().clamp_min(1e-300)
    chol, info = torch.linalg.cholesky_ex(gram + lam * torch.eye(n, dtype=torch.float64, device=x.device))
    if int(info):
        return fit  # type: ignore[return-value]
    sol = torch.cholesky_solve((rhs + lam * prior.reshape(c, n)).T, chol).T  # (C_out, N)
    kernel = sol.reshape(c, m, c, *[ks] * ndim).transpose(0, 1).contiguous()
    return {"gram": gram, "rhs": rhs, "kernel": kernel, "center": center, "scale": scale}


def stencil_vjp(fit: dict[str, Tensor], state: Tensor, v: Tensor, boundary: str) -> Tensor:
    """``J_S^T v`` ``(B, C, *spatial)`` of the fitted model at ``state``: ``sum_m K_m^T (phi_m v)``, the transpose
    of one convolution from ``C`` to ``M C`` channels by autograd (so every padding mode transposes exactly).

    Computed in float64 for 1D states on a CPU, in the state's dtype otherwise (as the emulator: at these sizes
    float32 convolutions on a CPU cost more in 1D, :func:`~sciml_zoo.nn.emulator.emulator_dtype`).
    """
    dtype = getattr(torch, emulator_dtype("auto", state))
    kernel, center, scale = (fit[key].to(dtype) for key in ("kernel", "center", "scale"))
    m, c, ks, ndim = kernel.shape[0], kernel.shape[1], kernel.shape[-1], state.dim() - 2
    phi = state_features(state.to(dtype), _FEATURES, center, scale)  # (B, M, *spatial)
    weighted = (phi[:, :, None] * v.to(dtype)[:, None]).flatten(1, 2)  # (B, M C, *spatial)
    with torch.enable_grad():
        u = torch.zeros_like(weighted[:, :c], requires_grad=True)
        out = _CONV[ndim](_pad(u, ks, boundary, ndim), kernel.reshape(m * c, c, *[ks] * ndim))
        (grad,) = torch.autograd.grad(out, u, grad_outputs=weighted)
    return grad.to(v.dtype)


def check_stencil_state(fit: Any) -> None:
    """Refuse a checkpointed stencil state that is not the tensors :func:`update_stencil` returns, sizes matching."""
    if fit is None:
        return
    keys = ["center", "gram", "kernel", "rhs", "scale"]
    if not isinstance(fit, dict) or sorted(fit) != keys or not all(isinstance(t, Tensor) for t in fit.values()):
        raise CheckpointFieldError("stencil", "is not {gram, rhs, kernel, center, scale} tensors")
    n, c = fit["gram"].shape[-1], fit["rhs"].shape[0]
    sizes = fit["gram"].shape == (n, n) and fit["rhs"].shape == (c, n) and fit["kernel"].numel() == c * n
    if not (sizes and fit["center"].numel() == c and fit["scale"].shape == fit["center"].shape):
        raise CheckpointFieldError("stencil", "has normal equations, a kernel and a normalisation of mismatched sizes")
