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

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sciml_zoo.errors import ConfigError
from sciml_zoo.solver import Solver

__all__ = [
    "ENTRY_POINT_GROUP",
    "SolverTrust",
    "available_solvers",
    "exec_options",
    "make_solver",
    "make_solver_from_file",
    "register",
    "registered_at_runtime",
    "required_options",
    "resolve_file_solver",
    "solver_factory",
    "solver_trust",
    "worker_context",
]

ENTRY_POINT_GROUP = "sciml_zoo.solvers"
_RUNTIME: dict[str, Callable[..., Solver]] = {}


@dataclass(frozen=True)
class SolverTrust:
    """What the user allowed on the command line for solvers named by files being opened.

    Attributes:
        allow_exec: ``--allow-exec``: the user trusts the files opened by this
            command; their solvers may import code and their options may run programs.
        solver: ``--solver NAME``: replaces the solver a file names (may be
            ``module:factory`` or ``path/to/script.py:factory``: the user gave it).
        options: ``--solver-option KEY=VALUE``: override a file's solver options;
            given by the user, so they may run programs.
    """

    allow_exec: bool = False
    solver: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


_TRUST: ContextVar[SolverTrust | None] = ContextVar("sciml_zoo_solver_trust", default=None)


@contextmanager
def solver_trust(trust: SolverTrust) -> Iterator[SolverTrust]:
    """Within the block, :func:`make_solver_from_file` follows ``trust`` (set by the CLI)."""
    token = _TRUST.set(trust)
    try:
        yield trust
    finally:
        _TRUST.reset(token)


def worker_context() -> tuple[SolverTrust | None, dict[str, Callable[..., Solver]]]:
    """The trust in effect and the solvers :func:`register` set here: what a worker process must be given."""
    return _TRUST.get(), dict(_RUNTIME)


def exec_options(factory: Callable[..., Any]) -> tuple[str, ...]:
    """Options of ``factory`` that run an executable or import code (its ``exec_options`` attribute)."""
    return tuple(getattr(factory, "exec_options", ()))


def register(name: str, factory: Callable[..., Solver]) -> None:
    """Register ``factory`` under ``name`` for this process (overrides entry points)."""
    _RUNTIME[name] = factory


def registered_at_runtime(name: str) -> bool:
    """Whether ``name`` was set in this process by :func:`register` (a deliberate substitute, like ``--solver``)."""
    return name in _RUNTIME


def available_solvers() -> dict[str, str]:
    """Map of registered solver names to where they come from."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update({name: f"{f.__module__}:{f.__qualname__}" for name, f in _RUNTIME.items()})
    return dict(sorted(found.items()))


# top-level module of an optional dependency -> the extra that installs it
_EXTRAS = {"phi": "phiflow", "phiml": "phiflow", "pde": "pypde", "numba": "pypde"}
_EXTRAS.update(dask="dask", distributed="dask")


def _names_code(name: str) -> bool:
    _check_solver_name(name)
    return ":" in name


def _check_solver_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"solver must be a registered solver name (a string, see `sciml-zoo solvers`), got {name!r}; "
            'e.g. solver = "toy-diffusion"'
        )


def _load_code(name: str) -> Callable[..., Solver]:
    """``module:factory`` or ``path/to/script.py:factory``: import it and return the factory."""
    target, _, attr = name.rpartition(":")
    if not target or not attr.isidentifier():
        raise ConfigError(f"solver {name!r}: write module:factory or path/to/script.py:factory")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ConfigError(f"solver {name!r}: script {str(path)!r} not found; give its path")
        mod_name = f"_sciml_zoo_script_{path.stem}_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"solver {name!r}: cannot import {str(path)!r} as a Python script")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except ImportError as exc:
            raise ConfigError(f"solver {name!r}: importing {str(path)!r} failed ({exc})") from exc
    else:
        module = _import_module(name, target)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"solver {name!r}: {target!r} has no callable {attr!r}")
    return factory


def _import_module(name: str, target: str) -> Any:
    """Import ``target`` installed, else from the working directory (appended to ``sys.path`` for this
    import only, so it never shadows an installed module). Only allowed names get here: typed on the
    command line, passed in Python, or read from a trusted file."""
    cwd = str(Path.cwd())
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name != target.split(".")[0] or cwd in sys.path:
            raise ConfigError(f"solver {name!r}: cannot import module {target!r} ({exc})") from exc
    sys.path.append(cwd)
    importlib.invalidate_caches()  # a module file written since the last import attempt
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        why = f"{exc}; not installed, nor in the working directory {cwd!r}"
        raise ConfigError(f"solver {name!r}: cannot import {target!r} ({why}); run from the adapter's folder") from exc
    finally:
        sys.path.remove(cwd)


def _load(name: str) -> Callable[..., Solver]:
    _check_solver_name(name)
    if name in _RUNTIME:
        return _RUNTIME[name]
    if _names_code(name):
        return _load_code(name)
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


def solver_factory(name: str) -> Callable[..., Solver]:
    """The factory registered as ``name`` (or named ``module:factory`` / ``script.py:factory``), not called.

    For provenance: dataset and run hashes fingerprint its code
    (:func:`sciml_zoo.provenance.code_fingerprint`).
    """
    return _load(name)


def required_options(name: str) -> tuple[str, ...]:
    """Options the factory of solver ``name`` cannot do without (no default), e.g. ``("command", "resolution")``."""
    try:
        params = inspect.signature(_load(name)).parameters.values()
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def make_solver(name: str, options: Mapping[str, Any] | None = None, /, **overrides: Any) -> Solver:
    """Build the solver registered as ``name`` (or ``module:factory``) with ``options``.

    For callers that hold the options themselves (Python code, tests). Options
    read from a file being opened go through :func:`make_solver_from_file`.
    ``options`` (e.g. ``recipe.solver_kwargs("source")``, ``resolution`` included) and keyword ``overrides``
    merge, the keywords winning: ``make_solver(recipe.solver, recipe.solver_kwargs("source"), resolution=(64,))``."""
    return _build(name, _load(name), {**(options or {}), **overrides})


def make_solver_from_file(name: str, options: Mapping[str, Any], *, origin: str) -> Solver:
    """Build a solver named by a file (dataset attribute, recipe, preset), refusing what runs code.

    A file may name only registered solvers, and may not set a factory's
    ``exec_options`` (a command, a build directory): those run programs. The
    user lifts this on the command line (:class:`SolverTrust`): ``--allow-exec``
    trusts the files, ``--solver`` replaces the name, ``--solver-option``
    supplies an option.

    Args:
        name: the solver the file names.
        options: the file's factory options.
        origin: the file, for the message (e.g. ``"dataset 'data/x.h5'"``).

    Raises:
        ConfigError: one line naming the file, the solver or option, and the fix.
    """
    name, merged = resolve_file_solver(name, options, origin=origin)
    return _build(name, _load(name), merged)


def resolve_file_solver(name: str, options: Mapping[str, Any], *, origin: str) -> tuple[str, dict[str, Any]]:
    """The solver name and options to build for a file's ``(name, options)``, after the user's
    ``--solver``/``--solver-option`` and the checks of :func:`make_solver_from_file`.

    Worker processes get this spec, never the file's raw one.
    """
    trust = _TRUST.get() or SolverTrust()
    if trust.solver:
        name = trust.solver
    elif _names_code(name) and not trust.allow_exec:
        raise ConfigError(
            f"{origin} names solver {name!r}, which imports code; a file being opened may name only "
            f"registered solvers (`sciml-zoo solvers`) — pass --solver {name} or --allow-exec if you trust it"
        )
    factory = _load(name)
    user = dict(trust.options)
    from_file = sorted(k for k in exec_options(factory) if k in options and k not in user)
    if from_file and not trust.allow_exec:
        keys = ", ".join(from_file)
        raise ConfigError(
            f"{origin} sets solver option(s) {keys} of {name!r}, which run a program; a file being opened "
            f"may not — pass --solver-option {from_file[0]}=VALUE yourself, or --allow-exec if you trust it"
        )
    return name, {**options, **user}


def _build(name: str, factory: Callable[..., Solver], options: Mapping[str, Any]) -> Solver:
    try:
        return factory(**options)
    except ImportError as exc:  # an adapter importing its simulator lazily
        raise ConfigError(
            f"solver {name!r} needs a package that is not installed ({exc}); install its extra, "
            f"e.g. pip install 'sciml-zoo[{_EXTRAS.get((exc.name or '').split('.')[0], 'all')}]'"
        ) from exc
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"bad options for solver {name!r}: {_bad_option(factory, options) or exc}") from exc


def _bad_option(factory: Callable[..., Any], options: Mapping[str, Any]) -> str:
    """Name the option whose value has not its default's kind (``dt = "abc"`` for a float), or ``""``."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return ""
    for key, value in options.items():
        default = params[key].default if key in params else None
        if isinstance(default, bool) and not isinstance(value, bool):
            return f"{key}={value!r} must be true or false (default {str(default).lower()})"
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{key}={value!r} must be a number (default {default!r}); e.g. {key} = {default!r}"
    return ""
