"""Find solver adapters by name through the ``sciml_zoo.solvers`` entry points.

A third-party package registers an adapter factory in its own
``pyproject.toml``::

    [project.entry-points."sciml_zoo.solvers"]
    my-solver = "my_package.adapter:make_solver"

The factory takes keyword arguments (``resolution=(nx, ny)`` plus any options
from the dataset recipe) and returns a :class:`~sciml_zoo.solver.Solver`.
:func:`register` adds one at run time (tests, notebooks).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from sciml_zoo.errors import ConfigError
from sciml_zoo.solver import Solver

__all__ = ["ENTRY_POINT_GROUP", "available_solvers", "make_solver", "register"]

ENTRY_POINT_GROUP = "sciml_zoo.solvers"
_RUNTIME: dict[str, Callable[..., Solver]] = {}


def register(name: str, factory: Callable[..., Solver]) -> None:
    """Register ``factory`` under ``name`` for this process (overrides entry points)."""
    _RUNTIME[name] = factory


def available_solvers() -> dict[str, str]:
    """Map of registered solver names to where they come from."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update({name: f"{f.__module__}:{f.__qualname__}" for name, f in _RUNTIME.items()})
    return dict(sorted(found.items()))


def _load(name: str) -> Callable[..., Solver]:
    if name in _RUNTIME:
        return _RUNTIME[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            try:
                return ep.load()
            except ImportError as exc:
                raise ConfigError(
                    f"solver {name!r} is registered but cannot be imported ({exc}); "
                    "install its extra, e.g. pip install 'sciml-zoo[phiflow]'"
                ) from exc
    names = ", ".join(available_solvers()) or "none"
    raise ConfigError(
        f"unknown solver {name!r}; installed solvers: {names} "
        "(see `sciml-zoo solvers`, or reinstall with pip install -e .)"
    )


def make_solver(name: str, **options: Any) -> Solver:
    """Build the solver registered as ``name`` with recipe ``options``."""
    factory = _load(name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for solver {name!r}: {exc}") from exc
