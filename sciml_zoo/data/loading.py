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

import torch
from torch import Tensor

from sciml_zoo.config_io import from_dict
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.data.store import open_dataset
from sciml_zoo.errors import DataError
from sciml_zoo.registry import make_solver_from_file
from sciml_zoo.solver import Solver

__all__ = [
    "Split",
    "Dataset",
    "load_dataset",
    "recipe_from_attrs",
    "source_solver",
    "dataset_hash",
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
    try:
        table = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise DataError(f"dataset {attrs.get('path', '?')!r} has a corrupt 'recipe' attribute ({exc})") from exc
    return from_dict(DatasetRecipe, table, where="recipe")


def dataset_hash(attrs: dict[str, Any]) -> str:
    """A hash of everything that determined a dataset: its recipe and generating versions.

    Uses the file's own ``hash`` attribute when generation recorded one.
    """
    if isinstance(attrs.get("hash"), str):
        return str(attrs["hash"])
    what = {k: attrs.get(k) for k in ("recipe", "versions")}
    text = json.dumps({k: json.loads(v) if isinstance(v, str) else v for k, v in what.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset file and split it by its ``split`` variable."""
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
    """
    origin = f"dataset {str(data.attrs.get('path', data.recipe.name))!r}"
    return make_solver_from_file(data.recipe.solver, data.recipe.solver_kwargs("source"), origin=origin)
