"""Finite-difference stencils shared by the NumPy adapters."""

from __future__ import annotations

import numpy as np

__all__ = ["periodic_laplacian_2d"]


def periodic_laplacian_2d(f: np.ndarray, h: float) -> np.ndarray:
    """5-point Laplacian of ``f (..., ny, nx)`` on a periodic grid of spacing ``h``."""
    return (np.roll(f, 1, -1) + np.roll(f, -1, -1) + np.roll(f, 1, -2) + np.roll(f, -1, -2) - 4.0 * f) / h**2
