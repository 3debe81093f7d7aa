"""Pure error metrics on tensors (tables over methods and seeds live in :mod:`sciml_zoo.tables`).

Predicted step i is compared with reference step i (the PBDL notebook is off
by one), and the metric is an L1 mean absolute error (which that notebook
mislabels as L2).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["mae"]


def mae(predicted: Tensor, reference: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the valid entries of the channel and spatial dims ``(C, *spatial)``.

    Args:
        predicted, reference: ``(..., C, *spatial)`` with 1 to 3 spatial axes.
        mask: ``(C, *spatial)`` boolean valid mask (padding is ignored); it
            also fixes how many trailing dims are reduced, so 1D, 2D and 3D
            states are measured alike (a dataset's ``valid_mask``; all-true
            when every entry is physical).
    Returns:
        ``(...)`` errors.
    """
    err = (predicted - reference).abs()
    dims = tuple(range(-mask.dim(), 0))
    m = mask.to(err.dtype)
    return (err * m).sum(dim=dims) / m.sum()
