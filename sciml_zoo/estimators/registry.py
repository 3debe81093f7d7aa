"""One registry from user-facing estimator name to class.

Names say which space an estimator works in: solver-space estimators
(``J^T v`` of the black-box step) are ``stop-gradient``, ``identity``,
``state-rge``, ``identity-rge``, ``stencil``, ``jacobian``, ``banded`` and
``auto`` (THE default); weight-space ones (DeepZero) are ``weight-rge``,
``weight-cge`` and ``sparse-cge``. TOML and the CLI give a name and a table of
options; :func:`make_estimator` builds and validates the object, so a bad
option fails when the config is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators.auto import Auto
from sciml_zoo.estimators.banded import Banded
from sciml_zoo.estimators.base import Estimator
from sciml_zoo.estimators.emulator import Emulator
from sciml_zoo.estimators.jacobian import Jacobian
from sciml_zoo.estimators.sparse_cge import SparseCGE
from sciml_zoo.estimators.state_rge import Identity, IdentityRGE, StateRGE, StopGradient
from sciml_zoo.estimators.stencil import Stencil
from sciml_zoo.estimators.weight_space import WeightCGE, WeightRGE

__all__ = ["DEFAULT_ESTIMATOR", "ESTIMATORS", "as_estimator", "make_estimator"]

ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (
        StopGradient,
        Identity,
        StateRGE,
        IdentityRGE,
        Stencil,
        Jacobian,
        Banded,
        Auto,
        Emulator,
        WeightRGE,
        WeightCGE,
        SparseCGE,
    )
}
"""User-facing name -> estimator class."""

DEFAULT_ESTIMATOR = "emulator"
"""What ``zo-sol`` uses when no estimator is given."""

_RENAMED = {
    "rge": "'weight-rge' (weight space) or 'state-rge' (solver space)",
    "cge": "'weight-cge'",
}


def make_estimator(name: str, options: Mapping[str, Any] | None = None) -> Estimator:
    """Build the estimator registered as ``name`` with ``options`` (its fields).

    Raises:
        ConfigError: unknown name, unknown option, or a bad value (the message
            names the value, the key and the fix).
    """
    options = dict(options or {})
    if name not in ESTIMATORS:
        hint = f" ({name!r} was renamed: use {_RENAMED[name]})" if name in _RENAMED else ""
        raise ConfigError(f"unknown estimator {name!r}{hint}; choose one of {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[name]
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if unknown := sorted(set(options) - set(valid)):
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for estimator {name!r}; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )
    return cls(**options)


def as_estimator(spec: Estimator | str | Mapping[str, Any], options: Mapping[str, Any] | None = None) -> Estimator:
    """An estimator from an object, a name (+ options) or a ``{"name": ..., **options}`` dict."""
    if isinstance(spec, Estimator):
        if options:
            raise ConfigError(
                f"estimator options {sorted(options)} given with an estimator object; set them as its fields, "
                f"e.g. {type(spec).__name__}({', '.join(f'{k}=...' for k in options)})"
            )
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "name" not in spec:
            raise ConfigError(f"estimator table {spec} has no 'name'; e.g. {{name = 'banded', radius = 2}}")
        name = spec.pop("name")
        return make_estimator(name, {**spec, **(options or {})})
    if isinstance(spec, str):
        return make_estimator(spec, options)
    raise ConfigError(f"estimator {spec!r} is not a name or an estimator object; e.g. 'auto' or Banded(radius=2)")
