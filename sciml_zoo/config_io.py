"""Fill frozen config dataclasses from TOML tables and ``key=value`` overrides.

Frozen dataclasses are the source of truth; this module only maps
dictionaries onto them, rejecting unknown keys with the list of valid ones.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import sys
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sciml_zoo.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_toml", "from_dict", "parse_override", "apply_overrides", "check_call_options"]

T = TypeVar("T")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax errors into :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found; check the path")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys raise :class:`ConfigError`.

    Args:
        cls: a (frozen) dataclass type.
        data: mapping of field names to values (e.g. one TOML table).
        where: name of the table, used in error messages (``"[train]"``).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k), where) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid value in {where}: {exc}") from exc


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``: a dotted key path and a value in TOML syntax.

    Values that are not valid TOML are taken as bare strings
    (``train.estimator=identity``); keys may be nested to any depth
    (``train.estimator_options.mu=1e-3``, ``methods.zo-sol.estimator=stencil``).
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.lr=1e-3")
    key, raw = text.split("=", 1)
    keys = [k.strip() for k in key.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"override {text!r} has an empty key; write it like train.lr=1e-3")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the nested table ``raw`` with each ``a.b.c=value`` override set in it.

    The one override syntax of the CLI (``--set``), presets and run configs.
    An estimator given by name becomes a table when an override reaches into
    it: ``train.estimator.difference=forward`` on ``estimator = "jacobian"``
    gives ``{name = "jacobian", difference = "forward"}``.
    """
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            if k == "estimator" and isinstance(node.get(k), str):
                node[k] = {"name": node[k]}
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is a value, not a table")
        node[keys[-1]] = value
    return raw


def check_call_options(label: str, cls: Any, options: Mapping[str, Any], *, given: Mapping[str, str] = {}) -> None:
    """Keys and value kinds of the options table ``label`` against the signature of ``cls``.

    For options passed to a class the user names (``torch.optim.SGD``, an LR
    scheduler): a value must have its default's kind (a number for a number,
    true/false for a bool, a list of numbers for a tuple), so ``momentum =
    "abc"`` is one line naming the key rather than torch's ``'<' not supported
    ...``; a required option (``T_max`` of ``CosineAnnealingLR``) must be given.

    Args:
        label: the table's name for messages, e.g. ``"train.optimizer_options"``.
        cls: the class (or function) the options are passed to.
        options: the user's options.
        given: arguments the caller passes itself, each with the fix to print
            when the user sets it (``{"lr": "set train.lr (--lr) instead"}``).

    Raises:
        ConfigError: one line naming the key, the value and the fix.
    """
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = [n for n, p in params.items() if n not in given and n != "self" and p.kind in kinds]
    name = getattr(cls, "__name__", str(cls))
    for opt, value in options.items():
        if opt in given:
            raise ConfigError(f"{label}.{opt} is passed by sciml-zoo itself; {given[opt]}")
        if opt not in names:
            raise ConfigError(f"{label}.{opt} is not an option of {name}; its options: {', '.join(names)}")
        default = params[opt].default
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, (int, float)):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple)) and len(value) == len(default)
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            kind = f"a list of {len(default)} numbers"
        else:
            continue
        if not ok:
            example = json.dumps(list(default) if isinstance(default, tuple) else default)
            raise ConfigError(f"{label}.{opt} must be {kind}, got {value!r}; e.g. {label}.{opt}={example}")
    missing = [n for n in names if params[n].default is inspect.Parameter.empty and n not in options]
    if missing:
        raise ConfigError(f"{label} must set {', '.join(missing)} for {name}; e.g. {label}.{missing[0]}=10")
