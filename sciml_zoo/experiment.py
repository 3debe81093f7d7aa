"""Configs from TOML: run configs (``train``) and presets (``compare``).

One config path: a TOML file, then ``a.b.c=value`` overrides
(:func:`~sciml_zoo.config_io.apply_overrides`, the syntax of every ``--set``),
then the frozen dataclasses, which validate everything before any solver runs.
:func:`load_run_config` reads a run config (``[model]``, ``[train]``, ``data``);
:func:`load_experiment` a preset.

A preset is a TOML file (``sciml_zoo/presets/<name>.toml``)::

    dataset = "wake_quick"         # a recipe in datasets/<name>.toml
    eval_steps = 100               # or a list of horizons, the first the headline
    seeds = [0, 1, 2]              # optional: train every method at each seed
    [model]  ...                   # ModelConfig fields
    [train]  ...                   # TrainConfig fields shared by all methods
    [methods.fo-sol]  method = "fo-sol"          # per-method overrides
    [methods.zo-sol]  method = "zo-sol"  estimator = "stencil"

Recipe and preset *names* resolve only to the package's own files
(:data:`RECIPE_DIR`, :data:`PRESET_DIR`); a user's files are used only when
given as paths (``my_recipe.toml``, ``./presets/mine.toml``), so a ``datasets/``
folder in the working directory cannot shadow a built-in recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sciml_zoo
from sciml_zoo.config import ModelConfig, RunConfig, TrainConfig
from sciml_zoo.config_io import apply_overrides, from_dict, load_toml
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.errors import ConfigError
from sciml_zoo.paths import check_name, next_to

__all__ = [
    "Experiment",
    "load_experiment",
    "load_run_config",
    "load_recipe",
    "find_recipe",
    "PRESET_DIR",
    "RECIPE_DIR",
]

PRESET_DIR = Path(__file__).parent / "presets"


def _recipe_dir() -> Path:
    # a wheel ships datasets/*.toml as sciml_zoo/recipes/; an editable install reads the checkout's datasets/
    installed = Path(sciml_zoo.__file__).parent / "recipes"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "datasets"


RECIPE_DIR = _recipe_dir()
"""The package's own dataset recipes: the only place recipe *names* resolve to."""
_KEYS = {"dataset", "eval_steps", "model", "train", "methods", "description", "seeds"}


@dataclass(frozen=True)
class Experiment:
    """A full comparison: recipe, model, per-method training configs, evaluation."""

    name: str
    recipe: DatasetRecipe
    model: ModelConfig
    methods: dict[str, TrainConfig]
    eval_steps: int
    description: str = ""
    seeds: tuple[int, ...] | None = None
    eval_horizons: tuple[int, ...] = ()

    @property
    def horizons(self) -> tuple[int, ...]:
        """Evaluation horizons, the headline (``eval_steps``) first."""
        return self.eval_horizons or (self.eval_steps,)

    def labels(self) -> dict[str, str]:
        """Method key -> table label, unique: a label two methods share gets the key appended."""
        names = [cfg.label for cfg in self.methods.values()]
        return {
            key: cfg.label if names.count(cfg.label) == 1 else f"{cfg.label} ({key})"
            for key, cfg in self.methods.items()
        }

    def runs(self) -> list[tuple[str, int | None, TrainConfig]]:
        """``(method key, seed, config)`` of every training run; seed ``None`` without ``seeds``."""
        if self.seeds is None:
            return [(key, None, cfg) for key, cfg in self.methods.items()]
        return [(key, s, replace(cfg, seed=s)) for s in self.seeds for key, cfg in self.methods.items()]


def _is_path(name: str) -> bool:
    return name.endswith(".toml") or "/" in name or "\\" in name


def find_recipe(name: str, *, named_by: Path | None = None) -> Path:
    """Path of recipe ``name``: a ``.toml`` path, or the name of one of the package's own recipes.

    A path named by a file (``named_by``, e.g. the user's preset) is relative to
    that file (:func:`~sciml_zoo.paths.next_to`); one given on the command line,
    to the working directory."""
    if _is_path(name):
        where = "" if named_by is None else f" (relative to {str(named_by)!r}, which names it)"
        p = Path(name).expanduser() if named_by is None else next_to(named_by, name, what="dataset")
        if p.is_file():
            return p
        raise ConfigError(f"dataset recipe file {name!r} not found{where}; give an existing .toml or a recipe name")
    if name and len(name) < 200 and (RECIPE_DIR / f"{name}.toml").is_file():
        return RECIPE_DIR / f"{name}.toml"
    avail = sorted(f.stem for f in RECIPE_DIR.glob("*.toml"))
    raise ConfigError(
        f"dataset recipe {name!r} not found; built-in recipes: {', '.join(avail) or 'none'} "
        "(a recipe of your own: give its path, e.g. ./my_recipe.toml)"
    )


def load_recipe(name: str, *, named_by: Path | None = None) -> DatasetRecipe:
    """Load the ``[dataset]`` table of a recipe file into a :class:`DatasetRecipe`."""
    path = find_recipe(name, named_by=named_by)
    table = load_toml(path)
    if "dataset" not in table:
        raise ConfigError(f"{path} has no [dataset] table")
    if not isinstance(table["dataset"], dict):
        raise ConfigError(
            f"{path} has no [dataset] table (its dataset = {table['dataset']!r} names a recipe: it looks like a "
            "preset); give a recipe file, or run the preset with `sciml-zoo compare --preset`"
        )
    recipe = from_dict(DatasetRecipe, table["dataset"], where=f"[dataset] of {path}")
    check_name(recipe.name, what=f"name in [dataset] of {path}")  # it becomes data/<name>.h5
    script, _, factory = recipe.solver.rpartition(":") if isinstance(recipe.solver, str) else ("", "", "")
    if script.endswith(".py") and path.parent != RECIPE_DIR:  # a script path is relative to the recipe naming it
        script_path = next_to(path, script, what="solver script").resolve()
        recipe = replace(recipe, solver=f"{script_path}:{factory}")
    return recipe


def load_run_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """A training run's config: TOML file (``[model]``, ``[train]``, ``data``) + overrides.

    Args:
        path: TOML file, or ``None`` to start from the defaults.
        overrides: ``a.b.c=value`` strings, e.g. ``train.lr=1e-3``,
            ``train.estimator_options.mu=1e-3``, ``model.width=16``,
            ``data=path.h5``.
    """
    raw = apply_overrides(load_toml(path) if path else {}, overrides)
    where = f" in {path}" if path else ""
    unknown = sorted(set(raw) - {"model", "train", "data"})
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}{where}; valid: [model], [train], data")
    for table in ("model", "train"):
        if not isinstance(raw.get(table, {}), dict):
            raise ConfigError(f"{table} must be a table ([{table}]){where}, got {raw[table]!r}")
    data = raw.get("data")
    if not data:
        raise ConfigError("no dataset given; pass --data PATH.h5 (made by `sciml-zoo generate`)")
    return RunConfig(
        str(data),
        from_dict(ModelConfig, raw.get("model", {}), where="[model]"),
        from_dict(TrainConfig, raw.get("train", {}), where="[train]"),
    )


def load_experiment(
    preset: str, *, overrides: Sequence[str] = (), only: list[str] | None = None, seeds: int | None = None
) -> Experiment:
    """Load a preset by name (``quick``, ``paper``) or TOML path.

    Args:
        preset: preset name or path.
        overrides: ``section.key=value`` strings, e.g. ``train.iterations=10``
            or ``methods.zo-sol.estimator=identity``.
        only: restrict to these method keys.
        seeds: train every method at seeds ``0 .. seeds-1`` (overrides the
            preset's ``seeds`` list).
    """
    path = Path(preset) if _is_path(preset) else PRESET_DIR / f"{preset}.toml"
    if not path.is_file():
        avail = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
        raise ConfigError(f"preset {preset!r} not found; available presets: {avail}")
    raw = apply_overrides(load_toml(path), overrides)
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in preset {path}; valid: {sorted(_KEYS)}")
    dataset = raw.get("dataset", "")
    if isinstance(dataset, dict):
        raise ConfigError(
            f"{str(path)!r} holds a [dataset] table: it is a dataset recipe, not a preset; pass it to "
            '`sciml-zoo generate`, or name it in a preset (dataset = "my_recipe.toml")'
        )
    if not isinstance(dataset, str):
        raise ConfigError(f"dataset in preset {str(path)!r} must be a recipe name or .toml path, got {dataset!r}")
    # a built-in preset names built-in recipes; a user's preset may name a recipe file next to it
    recipe = load_recipe(dataset, named_by=None if path.parent == PRESET_DIR else path)
    model = from_dict(ModelConfig, raw.get("model", {}), where="[model]")
    shared = raw.get("train", {})
    methods_raw = raw.get("methods", {})
    _check_methods(raw.get("methods"), shared, path)
    if only:
        missing = sorted(set(only) - set(methods_raw))
        if missing:
            raise ConfigError(f"unknown method(s) {missing}; this preset has {sorted(methods_raw)}")
        methods_raw = {k: v for k, v in methods_raw.items() if k in only}
    methods = {
        key: from_dict(TrainConfig, {**shared, **table}, where=f"[methods.{key}]") for key, table in methods_raw.items()
    }
    horizons = _horizons(raw.get("eval_steps", 100))
    seed_list = _seed_list(raw.get("seeds"), seeds)
    return Experiment(
        name=path.stem,
        recipe=recipe,
        model=model,
        methods=methods,
        eval_steps=horizons[0],
        description=str(raw.get("description", "")),
        seeds=seed_list,
        eval_horizons=horizons,
    )


def _check_methods(methods: Any, shared: Any, path: Path) -> None:
    """``[methods]`` is a non-empty table of tables whose keys are plain names (each becomes ``out/runs/<key>``)."""
    if not isinstance(shared, dict):
        raise ConfigError(f"train in preset {str(path)!r} must be a table ([train]), got {shared!r}")
    if not isinstance(methods, dict) or not methods:
        raise ConfigError(
            f"preset {str(path)!r} has {'an empty' if methods == {} else 'no'} [methods] table; add at least one "
            'method, e.g. [methods.non] with method = "non"'
        )
    for key, table in methods.items():
        check_name(key, what="method key in [methods]")
        if not isinstance(table, dict):
            raise ConfigError(f"methods.{key} in preset {str(path)!r} must be a table ([methods.{key}]), got {table!r}")


def _horizons(value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items):
        raise ConfigError(f"eval_steps must be a positive integer or a list of them, got {value!r}")
    return tuple(items)


def _seed_list(value: Any, count: int | None) -> tuple[int, ...] | None:
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"--seeds must be a positive integer, got {count!r}")
        return tuple(range(count))
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ConfigError(f"seeds must be a list of integers like [0, 1, 2], got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"seeds {value} repeat a seed; list each once")
    return tuple(value)
