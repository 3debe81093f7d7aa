"""Gradient estimators for training through black-box solvers.

- Weight-space (DeepZero, ICLR 2024): :class:`RGE`, :class:`CGE`, :class:`SparseCGE`,
  with ZO-GraSP sparsity ratios (:func:`zo_grasp_ratios`).
- Solver-space: :func:`make_zo_step` wraps a black-box step in an autograd
  function whose backward estimates the solver's vector-Jacobian product.
"""

from sciml_zoo.estimators.grasp import zo_grasp_ratios
from sciml_zoo.estimators.solver_space import (
    check_step_size,
    compare_vjp,
    exact_vjp,
    make_zo_step,
    vjp_cosine,
    vjp_estimate,
)
from sciml_zoo.estimators.weight_space import CGE, RGE, SparseCGE, make_weight_space_estimator

__all__ = [
    "CGE",
    "RGE",
    "SparseCGE",
    "check_step_size",
    "compare_vjp",
    "exact_vjp",
    "make_weight_space_estimator",
    "make_zo_step",
    "vjp_cosine",
    "vjp_estimate",
    "zo_grasp_ratios",
]
