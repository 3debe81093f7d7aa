"""HDF5 storage of reference trajectories, opened as ``xarray.Dataset``.

Layout (pdearena-style, one file per dataset)::

    /state       float32 (sim, time, channel, *space)  restricted reference
    /params      float64 (sim, param)                  physical parameters
    /split       bytes   (sim,)                        "train" or "test"
    /valid_mask  uint8   (channel, *space)             physically meaningful entries

``*space`` is ``x`` (1D), ``y, x`` (2D) or ``z, y, x`` (3D): ``x`` is last.
    attrs: recipe, solver, dt, resolutions, warm-up, seed, versions (JSON)

Parameters live in datasets and attributes, never in file names. Writes go
through :func:`sciml_zoo.provenance.atomic_path`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr

from sciml_zoo.errors import DataError
from sciml_zoo.provenance import atomic_path, to_jsonable

__all__ = ["write_dataset", "open_dataset", "state_dims", "DIMS", "SPATIAL_DIMS"]

SPATIAL_DIMS = {1: ("x",), 2: ("y", "x"), 3: ("z", "y", "x")}
"""Names of the spatial dims by their number, ``x`` last."""
DIMS = ("sim", "time", "channel", "y", "x")
"""Dims of a 2D state array (see :func:`state_dims` for 1D and 3D)."""


def state_dims(spatial: int) -> tuple[str, ...]:
    """Named dims of a stored state with ``spatial`` (1, 2 or 3) spatial axes."""
    if spatial not in SPATIAL_DIMS:
        raise DataError(f"states need 1 to 3 spatial axes, got {spatial}")
    return ("sim", "time", "channel", *SPATIAL_DIMS[spatial])


def write_dataset(
    path: str | Path,
    *,
    state: np.ndarray,
    params: np.ndarray,
    split: list[str],
    valid_mask: np.ndarray,
    param_names: tuple[str, ...],
    attrs: dict[str, Any],
) -> None:
    """Atomically write a dataset file (see module docstring for the layout)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        d = f.create_dataset("state", data=state.astype(np.float32), chunks=True)
        d.attrs["dims"] = json.dumps(state_dims(state.ndim - 3))
        f.create_dataset("params", data=np.asarray(params, dtype=np.float64))
        f.create_dataset("split", data=np.array(split, dtype="S5"))
        f.create_dataset("valid_mask", data=valid_mask.astype(np.uint8))
        f.attrs["param_names"] = json.dumps(list(param_names))
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(to_jsonable(value))


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open a dataset file as an in-memory ``xarray.Dataset``.

    Raises:
        DataError: the file is missing, not HDF5, or lacks required fields —
            with the command that recreates it.
    """
    p = Path(path)
    fix = "generate it with `sciml-zoo generate` (or pass the right --data path)"
    if not p.is_file():
        raise DataError(f"dataset {str(p)!r} not found; {fix}")
    try:
        with h5py.File(p, "r") as f:
            missing = [k for k in ("state", "params", "split", "valid_mask") if k not in f]
            if missing:
                raise DataError(f"dataset {str(p)!r} lacks {missing}; delete it and {fix}")
            state = f["state"][...]
            params = f["params"][...]
            split = [s.decode() for s in f["split"][...]]
            mask = f["valid_mask"][...].astype(bool)
            param_names = json.loads(f.attrs["param_names"])
            attrs = {k: json.loads(v) for k, v in f.attrs.items() if k != "param_names"}
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"dataset {str(p)!r} is corrupt or not HDF5 ({exc}); delete it and {fix}") from exc
    dims = state_dims(state.ndim - 3)
    ds = xr.Dataset(
        {
            "state": (dims, state),
            "params": (("sim", "param"), params),
            "split": (("sim",), np.array(split)),
            "valid_mask": (dims[2:], mask),
        },
        coords={"param": list(param_names), "time": np.arange(state.shape[1])},
    )
    ds.attrs.update({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in attrs.items()})
    ds.attrs["path"] = str(p)
    return ds
