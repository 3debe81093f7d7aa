"""Experiment presets: a dataset recipe plus one training config per method.

A preset is a TOML file (``sciml_zoo/presets/<name>.toml``)::

    dataset = "wake_quick"         # a recipe in datasets/<name>.toml
    eval_steps = 100
    [model]  ...                   # ModelConfig fields
    [train]  ...                   # TrainConfig fields shared by all methods
    [methods.fo-sol]  method = "fo-sol"          # per-method overrides
    [methods.zo-sol]  method = "zo-sol"  estimator = "stencil"

Recipes are looked up in ``$SCIML_ZOO_DATASETS``, ``./datasets`` and the
``datasets/`` folder of the source checkout.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sciml_zoo.config_io import from_dict, load_toml, parse_override
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.errors import ConfigError
from sciml_zoo.train.config import ModelConfig, TrainConfig

__all__ = ["Experiment", "load_experiment", "load_recipe", "find_recipe", "PRESET_DIR"]

PRESET_DIR = Path(__file__).parent / "presets"
_KEYS = {"dataset", "eval_steps", "model", "train", "methods", "description"}


@dataclass(frozen=True)
class Experiment:
    """A full comparison: recipe, model, per-method training configs, evaluation."""

    name: str
    recipe: DatasetRecipe
    model: ModelConfig
    methods: dict[str, TrainConfig]
    eval_steps: int
    description: str = ""


def _recipe_dirs() -> list[Path]:
    dirs = [Path(os.environ["SCIML_ZOO_DATASETS"])] if "SCIML_ZOO_DATASETS" in os.environ else []
    return [*dirs, Path.cwd() / "datasets", Path(__file__).resolve().parents[1] / "datasets"]


def find_recipe(name: str, *, relative_to: Path | None = None) -> Path:
    """Path of recipe ``name``: a file path (tried next to ``relative_to`` first,
    e.g. the preset's folder), or a name in a datasets/ folder."""
    p = Path(name)
    if p.suffix == ".toml":
        for candidate in ([relative_to / p] if relative_to is not None else []) + [p]:
            if candidate.is_file():
                return candidate
    for d in _recipe_dirs():
        if (d / f"{name}.toml").is_file():
            return d / f"{name}.toml"
    avail = sorted({f.stem for d in _recipe_dirs() if d.is_dir() for f in d.glob("*.toml")})
    raise ConfigError(f"dataset recipe {name!r} not found; available: {', '.join(avail) or 'none'}")


def load_recipe(name: str, *, relative_to: Path | None = None) -> DatasetRecipe:
    """Load the ``[dataset]`` table of a recipe file into a :class:`DatasetRecipe`."""
    path = find_recipe(name, relative_to=relative_to)
    table = load_toml(path)
    if "dataset" not in table:
        raise ConfigError(f"{path} has no [dataset] table")
    return from_dict(DatasetRecipe, table["dataset"], where=f"[dataset] of {path}")


def _apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a table")
        node[keys[-1]] = value
    return raw


def load_experiment(preset: str, *, overrides: list[str] = (), only: list[str] | None = None) -> Experiment:  # type: ignore[assignment]
    """Load a preset by name (``quick``, ``paper``) or TOML path.

    Args:
        preset: preset name or path.
        overrides: ``section.key=value`` strings, e.g. ``train.iterations=10``
            or ``methods.zo-sol.estimator=identity``.
        only: restrict to these method keys.
    """
    path = Path(preset) if preset.endswith(".toml") else PRESET_DIR / f"{preset}.toml"
    if not path.is_file():
        avail = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
        raise ConfigError(f"preset {preset!r} not found; available presets: {avail}")
    raw = _apply_overrides(load_toml(path), list(overrides))
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in preset {path}; valid: {sorted(_KEYS)}")
    recipe = load_recipe(raw.get("dataset", ""), relative_to=path.parent)
    model = from_dict(ModelConfig, raw.get("model", {}), where="[model]")
    shared = raw.get("train", {})
    methods_raw = raw.get("methods", {})
    if only:
        missing = sorted(set(only) - set(methods_raw))
        if missing:
            raise ConfigError(f"unknown method(s) {missing}; this preset has {sorted(methods_raw)}")
        methods_raw = {k: v for k, v in methods_raw.items() if k in only}
    methods = {
        key: from_dict(TrainConfig, {**shared, **table}, where=f"[methods.{key}]") for key, table in methods_raw.items()
    }
    return Experiment(
        name=path.stem,
        recipe=recipe,
        model=model,
        methods=methods,
        eval_steps=int(raw.get("eval_steps", 100)),
        description=str(raw.get("description", "")),
    )
