"""sciml-zoo: solver-in-the-loop training through non-differentiable simulators.

Scripts: ``import sciml_zoo as sz``; ``sz.generate``, ``sz.train``, ``sz.evaluate``,
``sz.compare`` (:mod:`sciml_zoo.api`, docs/python_api.md).
"""

import sys
import types

from sciml_zoo import api as _api
from sciml_zoo.api import Results, Run, dataset_solver, generate, load_dataset
from sciml_zoo.callable_module import CallableModule
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

# ``train``, ``evaluate`` and ``compare`` are also submodules: callable stand-ins keep both (callable_module.py)
train = CallableModule("sciml_zoo.train", _api.train)
evaluate = CallableModule("sciml_zoo.evaluate", _api.evaluate)
compare = CallableModule("sciml_zoo.compare", _api.compare)


class _Package(types.ModuleType):
    """This package, refusing to let a first ``import sciml_zoo.train`` replace the ``train`` stand-in."""

    def __setattr__(self, name: str, value: object) -> None:
        current = self.__dict__.get(name)
        if isinstance(current, CallableModule) and getattr(value, "__name__", None) == current.__name__:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "Results",
    "Run",
    "compare",
    "dataset_solver",
    "evaluate",
    "generate",
    "load_dataset",
    "train",
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
