"""Gradient estimators for training through black-box solvers, as strategy objects.

Choose one by constructing it (or by name through :data:`ESTIMATORS` /
:func:`make_estimator`)::

    from sciml_zoo.estimators import Banded
    cfg = TrainConfig(method="zo-sol", estimator=Banded(radius=2))

- Solver-space (``J^T v`` of the black-box step inside one autograd function,
  :func:`make_zo_step`): :class:`StopGradient`, :class:`Identity`,
  :class:`StateRGE`, :class:`IdentityRGE`, :class:`Stencil`,
  :class:`Jacobian`, :class:`Banded`, :class:`Auto` (the default).
- Weight-space (DeepZero, ICLR 2024): :class:`WeightRGE`, :class:`WeightCGE`,
  :class:`SparseCGE` with ZO-GraSP ratios (:func:`zo_grasp_ratios`).
"""

from sciml_zoo.estimators.auto import Auto
from sciml_zoo.estimators.banded import Banded
from sciml_zoo.estimators.base import Estimator, ProbeContext, SolverSpaceEstimator, WeightSpaceEstimator
from sciml_zoo.estimators.emulator import Emulator
from sciml_zoo.estimators.grasp import zo_grasp_ratios
from sciml_zoo.estimators.jacobian import Jacobian
from sciml_zoo.estimators.probes import Agreement, agreement, check_step_size
from sciml_zoo.estimators.registry import DEFAULT_ESTIMATOR, ESTIMATORS, as_estimator, make_estimator
from sciml_zoo.estimators.solver_space import ZOStep, compare_vjp, exact_vjp, make_zo_step, vjp_estimate
from sciml_zoo.estimators.sparse_cge import SparseCGE
from sciml_zoo.estimators.state_rge import Identity, IdentityRGE, StateRGE, StopGradient
from sciml_zoo.estimators.stencil import Stencil
from sciml_zoo.estimators.weight_space import WeightCGE, WeightRGE

__all__ = [
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "Agreement",
    "Auto",
    "Banded",
    "Emulator",
    "Estimator",
    "Identity",
    "IdentityRGE",
    "Jacobian",
    "ProbeContext",
    "SolverSpaceEstimator",
    "SparseCGE",
    "StateRGE",
    "Stencil",
    "StopGradient",
    "WeightCGE",
    "WeightRGE",
    "WeightSpaceEstimator",
    "ZOStep",
    "agreement",
    "as_estimator",
    "check_step_size",
    "compare_vjp",
    "exact_vjp",
    "make_estimator",
    "make_zo_step",
    "vjp_estimate",
    "zo_grasp_ratios",
]
