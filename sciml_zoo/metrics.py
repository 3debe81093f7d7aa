"""Pure error metrics on tensors and xarray objects.

Predicted step i is compared with reference step i (the PBDL notebook is off
by one), and the metric is an L1 mean absolute error (which that notebook
mislabels as L2).
"""

from __future__ import annotations

import xarray as xr
from torch import Tensor

__all__ = ["mae", "summarize"]


def mae(predicted: Tensor, reference: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error over the channel and spatial dims ``(C, *spatial)``.

    Args:
        predicted, reference: ``(..., C, *spatial)``.
        mask: ``(C, *spatial)`` boolean valid mask (padding is ignored); it
            also fixes how many trailing dims are reduced. Without a mask the
            inputs are read as ``(..., C, H, W)`` (three trailing dims).
    Returns:
        ``(...)`` errors.
    """
    err = (predicted - reference).abs()
    if mask is None:
        return err.mean(dim=(-3, -2, -1))
    dims = tuple(range(-mask.dim(), 0))
    m = mask.to(err.dtype)
    return (err * m).sum(dim=dims) / m.sum()


def summarize(errors: xr.DataArray) -> xr.Dataset:
    """Overall, per-simulation and per-step means of an error array.

    Args:
        errors: dims ``(method, sim, step)``.
    Returns:
        Dataset with ``overall`` (method), ``per_sim`` (method, sim),
        ``per_step`` (method, step) and ``sim_std`` (method): the std over
        simulations of their mean errors, the ``±`` of published tables.
    """
    per_sim = errors.mean("step")
    return xr.Dataset(
        {
            "overall": errors.mean(("sim", "step")),
            "per_sim": per_sim,
            "per_step": errors.mean("sim"),
            "sim_std": per_sim.std("sim"),
        }
    )
