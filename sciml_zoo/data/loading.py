"""A dataset file as tensors: separate training and test views, the mask, the recipe.

Training code receives :attr:`Dataset.train` only; evaluation reads
:attr:`Dataset.test`. Normalisation statistics therefore cannot see test
simulations (the PBDL notebook's leak).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import torch
from torch import Tensor

from sciml_zoo.config_io import from_dict
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.data.store import open_dataset
from sciml_zoo.errors import ConfigError, DataError
from sciml_zoo.provenance import code_fingerprint
from sciml_zoo.registry import make_solver_from_file, registered_at_runtime, resolve_file_solver, solver_factory
from sciml_zoo.solver import MAX_SPATIAL_DIMS, Solver

__all__ = [
    "Split",
    "Dataset",
    "load_dataset",
    "recipe_from_attrs",
    "source_solver",
    "dataset_hash",
    "check_code",
    "check_layout",
    "check_solver_fits",
]


@dataclass(frozen=True)
class Split:
    """The simulations of one split: ``states`` (S, T, C, *spatial), ``params`` (S, P)."""

    states: Tensor
    params: Tensor

    def __len__(self) -> int:
        return int(self.states.shape[0])


@dataclass(frozen=True)
class Dataset:
    """One dataset file: its training and test splits, valid mask and recipe.

    Attributes:
        train: training simulations (the only data training sees).
        test: held-out simulations (evaluation only).
        mask: ``(C, *spatial)`` bool valid mask.
        recipe: the recipe that generated the file.
        attrs: the file's attributes (recipe, versions, path, ...).
    """

    train: Split
    test: Split
    mask: Tensor
    recipe: DatasetRecipe
    attrs: dict[str, Any]

    @property
    def spatial_dims(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return self.mask.dim() - 1

    @property
    def hash(self) -> str:
        """Hash of what determined this dataset (see :func:`dataset_hash`)."""
        return dataset_hash(self.attrs)


def recipe_from_attrs(attrs: dict[str, Any]) -> DatasetRecipe:
    """Rebuild the :class:`DatasetRecipe` stored in a dataset's attributes."""
    raw = attrs.get("recipe")
    if raw is None:
        raise DataError(
            f"dataset {attrs.get('path', '?')!r} has no 'recipe' attribute; it was not made by "
            "`sciml-zoo generate` — regenerate it from its recipe"
        )
    where = f"dataset {attrs.get('path', '?')!r}"
    try:
        table = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} has a corrupt 'recipe' attribute ({exc}); regenerate it from its recipe") from None
    if not isinstance(table, dict):
        raise DataError(
            f"{where} has a 'recipe' attribute holding {type(table).__name__} {table!r:.40}, not a recipe table; "
            "regenerate it from its recipe"
        )
    try:
        return from_dict(DatasetRecipe, table, where="recipe")
    except ConfigError as exc:
        raise DataError(f"{where} has a corrupt 'recipe' attribute: {exc}; regenerate it from its recipe") from None


def dataset_hash(attrs: dict[str, Any]) -> str:
    """A hash of everything that determined a dataset: its recipe and generating versions.

    Uses the file's own ``hash`` attribute when generation recorded one.
    """
    if isinstance(attrs.get("hash"), str):
        return str(attrs["hash"])
    what = {k: attrs.get(k) for k in ("recipe", "versions")}
    text = json.dumps({k: json.loads(v) if isinstance(v, str) else v for k, v in what.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_layout(path: str | Path) -> None:
    """Refuse a malformed dataset file with one line naming the problem, before it is read.

    Checks what the rest of the package relies on: ``state`` is a float array
    ``(S, T, C, *spatial)`` with 1 to 3 spatial axes, ``params`` is ``(S, P)``,
    ``split`` has ``S`` entries, ``valid_mask`` is ``(C, *spatial)``, and every
    file attribute is a JSON string (the ``recipe`` a JSON table). A missing
    or unreadable file is left to :func:`~sciml_zoo.data.store.open_dataset`.

    Raises:
        DataError: the first problem found, with the fix.
    """
    where, fix = f"dataset {str(path)!r}", "regenerate it with `sciml-zoo generate`"
    try:
        with h5py.File(path, "r") as f:
            shapes = {
                k: f[k].shape for k in ("state", "params", "split", "valid_mask") if isinstance(f.get(k), h5py.Dataset)
            }
            state_kind = f["state"].dtype.kind if "state" in shapes else "f"
            attrs = dict(f.attrs)
    except OSError:
        return  # not a file or not HDF5: open_dataset says so
    if len(shapes) < 4:
        return  # open_dataset names the missing fields
    state, params, split, mask = (shapes[k] for k in ("state", "params", "split", "valid_mask"))
    problems = []
    if not 4 <= len(state) <= 3 + MAX_SPATIAL_DIMS:
        problems.append(f"its state has shape {state}, not (simulations, frames, channels, 1 to 3 spatial axes)")
    elif state_kind != "f":
        problems.append(f"its state holds {state_kind!r}-kind values, not floats")
    elif len(params) != 2 or params[0] != state[0]:
        problems.append(f"its params have shape {params}, not ({state[0]} simulations, parameters)")
    elif split != (state[0],):
        problems.append(f"its split has shape {split}, not ({state[0]},) (one entry per simulation)")
    elif tuple(mask) != tuple(state[2:]):
        problems.append(f"its valid_mask has shape {tuple(mask)}, but a state frame has shape {tuple(state[2:])}")
    for key, value in attrs.items():
        if problems:
            break
        if not isinstance(value, (str, bytes)):
            problems.append(f"its {key!r} attribute holds {type(value).__name__} {value!r:.40}, not JSON text")
        elif key == "recipe":
            try:
                table = json.loads(value)
            except json.JSONDecodeError:
                table = None
            if not isinstance(table, dict):
                problems.append(f"its 'recipe' attribute {value!r:.40} is not a JSON table")
    if problems:
        raise DataError(f"{where} is malformed: {problems[0]}; {fix}")


def check_solver_fits(data: Dataset, solver: Solver) -> Solver:
    """Refuse a solver whose state shape is not the dataset's (e.g. 2 channels on 1-channel data).

    Without this the solver's first query would fail, counted as a solver
    fault, on every call.

    Raises:
        DataError: one line naming both shapes.
    """
    frame = tuple(data.mask.shape)
    try:
        solver_shape = tuple(int(n) for n in solver.state_shape)
    except (AttributeError, TypeError, ValueError):
        return solver  # the adapter's own checks (check_adapter) cover a missing state_shape
    if solver_shape != frame:
        raise DataError(
            f"solver {getattr(solver, 'name', '?')!r} has states of shape {solver_shape} (channels, *spatial), "
            f"but dataset {str(data.attrs.get('path', data.recipe.name))!r} holds frames of shape {frame}; "
            "use the solver and resolution the dataset was generated with (its recipe), or regenerate the data"
        )
    return solver


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset file and split it by its ``split`` variable (malformed files refused: :func:`check_layout`)."""
    check_layout(path)
    ds = open_dataset(path)
    split = ds["split"].values
    states = torch.from_numpy(ds["state"].values)
    params = torch.from_numpy(ds["params"].values).float()
    train = torch.from_numpy((split == "train").nonzero()[0])
    test = torch.from_numpy((split == "test").nonzero()[0])
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"dataset {str(path)!r} needs training and test simulations; regenerate it from its recipe")
    return Dataset(
        train=Split(states[train], params[train]),
        test=Split(states[test], params[test]),
        mask=torch.from_numpy(ds["valid_mask"].values),
        recipe=recipe_from_attrs(dict(ds.attrs)),
        attrs=dict(ds.attrs),
    )


def source_solver(data: Dataset) -> Solver:
    """The low-fidelity solver the dataset was made for.

    The dataset is a file being opened: it may name only registered solvers and
    set no option that runs a program (see :func:`~sciml_zoo.registry.make_solver_from_file`).
    Its adapter must still be the code that generated it (:func:`check_code`).
    """
    origin = f"dataset {str(data.attrs.get('path', data.recipe.name))!r}"
    name, _ = resolve_file_solver(data.recipe.solver, data.recipe.solver_kwargs("source"), origin=origin)
    if name == data.recipe.solver and not registered_at_runtime(name):  # a substitute (--solver, register())
        check_code(data, name)  # is the user's choice; the adapter the file names must be its generator's code
    return check_solver_fits(
        data, make_solver_from_file(data.recipe.solver, data.recipe.solver_kwargs("source"), origin=origin)
    )


def check_code(data: Dataset, solver: str) -> None:
    """Refuse a dataset whose adapter code or simulator packages changed since it was generated.

    The file's ``code`` attribute (:func:`~sciml_zoo.provenance.code_fingerprint`
    at generation, part of its hash) must equal the fingerprint of ``solver``'s
    factory now; otherwise training or evaluating on it would pair the old data
    (and, through the dataset hash, the old runs) with new code. Files from
    before fingerprints (no ``code`` attribute) are not checked.

    Raises:
        DataError: one line naming the changed files or packages and the fix.
    """
    raw = data.attrs.get("code")
    if raw is None:
        return
    try:
        recorded = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        recorded = None
    now = code_fingerprint(solver_factory(solver))
    if recorded == now:
        return
    if not isinstance(recorded, dict):
        changed = ["its 'code' attribute is corrupt"]
    else:
        old_files, old_pkgs = recorded.get("files") or {}, recorded.get("packages") or {}
        changed = [f for f in sorted({*old_files, *now["files"]}) if old_files.get(f) != now["files"].get(f)]
        changed += [
            f"{p} {old_pkgs.get(p)} -> {now['packages'].get(p)}"
            for p in sorted({*old_pkgs, *now["packages"]})
            if old_pkgs.get(p) != now["packages"].get(p)
        ] or ([] if changed else ["the adapter's module"])
    raise DataError(
        f"dataset {str(data.attrs.get('path', data.recipe.name))!r} was generated by other code of solver "
        f"{solver!r} ({', '.join(changed)} changed since); regenerate it with `sciml-zoo generate` "
        "(compare does so itself), so the data and the runs on it match the adapter"
    )
