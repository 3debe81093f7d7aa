"""sciml-zoo: solver-in-the-loop training through non-differentiable simulators."""

from sciml_zoo.errors import ConfigError, DataError, SciMLZooError, SolverError
from sciml_zoo.registry import available_solvers, make_solver, register
from sciml_zoo.rollout import corrected_rollout, corrected_step, trajectory
from sciml_zoo.solver import (
    Capabilities,
    Solver,
    SolverBase,
    StepCounter,
    black_box,
    check_state,
    counting,
    differentiable,
)

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "ConfigError",
    "DataError",
    "SciMLZooError",
    "Solver",
    "SolverBase",
    "SolverError",
    "StepCounter",
    "available_solvers",
    "black_box",
    "check_state",
    "corrected_rollout",
    "corrected_step",
    "counting",
    "differentiable",
    "make_solver",
    "register",
    "trajectory",
    "__version__",
]
