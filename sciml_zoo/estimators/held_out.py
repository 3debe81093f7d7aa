"""Running statistics of a held-out check: how well estimates of ``J^T v`` predict measured slopes.

The solver gives true slopes ``s_i = <v, J r_i> = <J^T v, r_i>`` along random
directions ``r_i`` (unit RMS), and an estimate ``g`` predicts ``<g, r_i>``.
Sums over checks, earlier ones weighted by ``decay``, are kept in the
estimator's state dict (checkpointed as plain floats):

- ``err^2 = sum (s_i - <g, r_i>)^2 / sum s_i^2 ~ |J^T v - g|^2 / |J^T v|^2``
  (isotropic ``r``: ``E[<e, r>^2] = |e|^2`` up to one factor for all), the
  relative error of ``g`` whatever the state size;
- for a fallback ``f`` and ``d = g - f``, the least-squares factor
  ``a = sum (s_i - <f, r_i>) <d, r_i> / sum <d, r_i>^2`` of ``f + a d``: the
  multiple of the step from the fallback towards ``g`` that the same
  directions confirm (a shrinkage estimate, clipped to [0, 1]).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["running_residual", "shrink_factor", "slopes", "update_shrink"]


def slopes(g: Tensor, r: Tensor) -> Tensor:
    """Slopes ``<g_b, r_bi>`` ``(B, q)`` (float64) of estimates ``g`` ``(B, C, ...)`` along ``r`` ``(B, q, C, ...)``."""
    return (g[:, None] * r).flatten(2).sum(2).double()


def running_residual(state: dict[str, Any], key: str, true_slope: Tensor, slope: Tensor, decay: float) -> float:
    """Add a check to ``state[key]`` and return the relative error ``err`` (NaN before any signal).

    ``state["check_norm"]`` must already hold the running ``sum s_i^2``.
    """
    state[key] = decay * float(state[key]) + float((true_slope - slope).pow(2).sum())
    return math.sqrt(state[key] / state["check_norm"]) if state["check_norm"] > 0 else math.nan


def update_shrink(
    state: dict[str, Any], true_slope: Tensor, r: Tensor, g: Tensor, fallback: Tensor, decay: float
) -> None:
    """Add a check to the running sums ``shrink_num``, ``shrink_den`` of the factor (module doc)."""
    off, along = true_slope - slopes(fallback, r), slopes(g - fallback, r)
    if bool(torch.isfinite(along).all()):
        state["shrink_num"] = decay * float(state["shrink_num"]) + float((off * along).sum())
        state["shrink_den"] = decay * float(state["shrink_den"]) + float(along.pow(2).sum())


def shrink_factor(state: dict[str, Any]) -> float:
    """The least-squares factor ``a`` in [0, 1] (module doc); 0 before any check."""
    num, den = float(state["shrink_num"]), float(state["shrink_den"])
    ratio = num / den if den > 0 else math.nan
    return min(max(ratio, 0.0), 1.0) if math.isfinite(ratio) else 0.0
