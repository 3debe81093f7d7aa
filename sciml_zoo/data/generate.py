"""Generate reference datasets: run high-fidelity simulations, restrict, store.

All simulations of a recipe (train and test) advance together as one batch, so
batched adapters pay one call per step. Every ``checkpoint_every`` steps the
high-resolution state and the frames kept so far are written atomically to
``<out>.partial``; a rerun after a kill resumes from there and produces the
same file bit for bit as an uninterrupted run (the solvers are deterministic).
SIGINT and SIGTERM save the step counter, the state and the frames as one
(:mod:`sciml_zoo.interrupts`: a signal waits until a step is committed).

A dataset is keyed by :func:`dataset_key`, the hash of its recipe, the solver
as resolved and the adapter's code (:func:`~sciml_zoo.provenance.code_fingerprint`),
stored as its ``hash`` attribute: an existing file with that hash is reused, a
dataset made from another recipe or adapter version is regenerated, and any
other file is refused. ``out`` is locked (``.<name>.lock`` beside it) while it is
checked and written, and the temporaries a killed run left beside it are removed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.data.store import write_dataset
from sciml_zoo.errors import DataError
from sciml_zoo.faults import FaultPolicy, make_query_step
from sciml_zoo.interrupts import interruptible
from sciml_zoo.paths import file_lock
from sciml_zoo.provenance import atomic_path, code_fingerprint, environment, to_jsonable
from sciml_zoo.registry import make_solver_from_file, resolve_file_solver, solver_factory
from sciml_zoo.solver import check_state

__all__ = ["generate_dataset", "partial_path", "dataset_record", "dataset_key", "stored_key"]


def partial_path(out: str | Path) -> Path:
    """Path of the resumable checkpoint that belongs to dataset file ``out``."""
    return Path(f"{out}.partial")


def dataset_record(recipe: DatasetRecipe) -> dict[str, Any]:
    """What determines the dataset of ``recipe``: the recipe, the solver and options as resolved
    (the user's ``--solver`` / ``--solver-option`` included) and the adapter's code fingerprint.

    ``checkpoint_every`` is left out: it changes when progress is saved, not the data.

    Raises:
        ConfigError: the recipe names a solver it may not (see
            :func:`~sciml_zoo.registry.resolve_file_solver`) or an unknown one.
    """
    origin = f"recipe {recipe.name!r}"
    name, reference = resolve_file_solver(recipe.solver, recipe.solver_kwargs("reference"), origin=origin)
    _, source = resolve_file_solver(recipe.solver, recipe.solver_kwargs("source"), origin=origin)
    table = {k: v for k, v in to_jsonable(recipe).items() if k != "checkpoint_every"}
    solver = {"name": name, "reference": reference, "source": source}
    return to_jsonable({"recipe": table, "solver": solver, "code": code_fingerprint(solver_factory(name))})


def dataset_key(recipe: DatasetRecipe) -> str:
    """The hash a dataset generated from ``recipe`` now gets (16 hex digits of SHA-256 of :func:`dataset_record`)."""
    return _key(dataset_record(recipe))


def _key(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def stored_key(path: str | Path) -> str | None:
    """The ``hash`` attribute of dataset file ``path``: ``None`` if it has none (missing, not HDF5,
    not made by ``sciml-zoo generate``), ``""`` for a dataset of an older sciml-zoo without one."""
    try:
        with h5py.File(path, "r") as f:
            if "recipe" not in f.attrs or "state" not in f:  # another program's HDF5 file, even with a 'hash'
                return None
            value = json.loads(f.attrs["hash"]) if "hash" in f.attrs else ""
            return value if isinstance(value, str) else ""
    except (OSError, ValueError, TypeError):
        return None


def _remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the temporaries killed writes of ``out`` and its partial left (``.<name>[.partial].XXXXXXXX.tmp``).

    Only this tool's own names beside ``out``; call it while holding ``out``'s lock.
    """
    own = re.compile(rf"\.{re.escape(out.name)}\.(partial\.)?[a-z0-9_]{{8}}\.tmp")
    stale = [p for p in out.parent.glob(f".{out.name}.*.tmp") if own.fullmatch(p.name) and not p.is_dir()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _save_partial(path: Path, *, step: int, fine: torch.Tensor, frames: list[np.ndarray], key: str) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["step"] = step
        f.attrs["recipe_key"] = key
        f.create_dataset("fine", data=fine.numpy())
        if frames:
            f.create_dataset("frames", data=np.stack(frames, axis=1))


def _load_partial(path: Path, key: str) -> tuple[int, torch.Tensor, list[np.ndarray]] | None:
    """The saved progress for dataset ``key``, or ``None``: the tool's own checkpoint of another
    recipe or adapter version (or an unreadable one) is discarded, and generation starts over."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs["recipe_key"] != key:
                return None
            step = int(f.attrs["step"])
            fine = torch.from_numpy(f["fine"][...])
            frames = list(np.moveaxis(f["frames"][...], 1, 0)) if "frames" in f else []
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return step, fine, frames


def _describe(solver: Any) -> Any:
    return solver.describe() if hasattr(solver, "describe") else {"name": solver.name}


def _valid_mask(solver: Any) -> np.ndarray:
    mask = getattr(solver, "valid_mask", None)
    return np.ones(solver.state_shape, dtype=bool) if mask is None else mask.numpy()


def generate_dataset(
    recipe: DatasetRecipe,
    out: str | Path,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Generate ``recipe`` into the HDF5 file ``out``; resume if interrupted.

    Args:
        recipe: what to simulate.
        out: destination file. If it holds the dataset of this recipe (same
            :func:`dataset_key`) and ``overwrite`` is false, nothing is done
            (the file is complete, because writes are atomic); if it holds a
            dataset of another recipe or adapter version, it is regenerated.
        progress: show a tqdm progress bar.
        overwrite: regenerate even if ``out`` is up to date, and replace a file
            that is not a sciml-zoo dataset.

    Returns:
        The path of the dataset file.

    Raises:
        ConfigError: another process is writing ``out``, or its lock file is a
            symbolic link.
        DataError: ``out`` exists and is not a dataset made by ``sciml-zoo
            generate`` (without ``overwrite``), or the solver misbehaves.
    """
    out = Path(out)
    record = dataset_record(recipe)  # also refuses a recipe naming code it may not import, before anything runs
    key = _key(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out.parent / f".{out.name}.lock", what=f"dataset {str(out)!r}"):
        _remove_stale_temporaries(out)
        if out.exists() and not overwrite:
            found = stored_key(out)
            if found == key:
                partial_path(out).unlink(missing_ok=True)  # left if a kill came between the write and its removal
                return out
            if found is None or not out.is_file():
                raise DataError(
                    f"{str(out)!r} exists and is not a dataset made by `sciml-zoo generate`; "
                    "pass --overwrite to replace it, or choose another --out"
                )
        _generate(recipe, out, key=key, code=record["code"], progress=progress)
    return out


def _generate(recipe: DatasetRecipe, out: Path, *, key: str, code: dict[str, Any], progress: bool) -> None:
    origin = f"recipe {recipe.name!r}"  # a file: no solver options that run programs unless the user allows
    fine_solver = make_solver_from_file(recipe.solver, recipe.solver_kwargs("reference"), origin=origin)
    coarse_solver = make_solver_from_file(recipe.solver, recipe.solver_kwargs("source"), origin=origin)
    params = torch.tensor(recipe.train_params + recipe.test_params, dtype=torch.float32)
    split = ["train"] * len(recipe.train_params) + ["test"] * len(recipe.test_params)

    missing = [m for m in ("initial_state", "restrict") if not callable(getattr(fine_solver, m, None))]
    if missing:
        raise DataError(
            f"solver {recipe.solver!r} lacks {', '.join(missing)}(), which dataset generation needs; "
            "subclass sciml_zoo.SolverBase (its restrict() block-averages) and define initial_state()"
        )
    hooks: Any = fine_solver
    total = recipe.warmup_steps + recipe.num_frames - 1
    ckpt = partial_path(out)
    resumed = _load_partial(ckpt, key)
    frames: list[np.ndarray]
    if resumed is None:
        step, fine, frames = 0, hooks.initial_state(params, seed=recipe.seed), []
    else:
        step, fine, frames = resumed
    who = f"{recipe.solver}.step (reference run)"
    # the fault policy of every solver call: a failed step is retried (a solver's own SystemExit too)
    reference_step = make_query_step(fine_solver, policy=FaultPolicy())

    def restricted(state: torch.Tensor) -> np.ndarray:
        coarse = hooks.restrict(state, tuple(recipe.source_resolution))
        check_state(coarse, coarse_solver.state_shape, who=f"{recipe.solver}.restrict")
        return np.asarray(coarse.numpy().astype(np.float32))

    restricted(fine)  # grids that do not restrict (e.g. do not divide) fail here, before any reference step
    start = time.perf_counter()
    bar = tqdm(total=total, initial=step, disable=not progress, desc=f"generate {recipe.name}")
    with interruptible() as guard:
        try:
            with torch.no_grad():
                if step == 0 and recipe.warmup_steps == 0 and not frames:
                    first = restricted(fine)
                    with guard.critical():
                        frames.append(first)
                while step < total:
                    new = reference_step(fine, params)
                    new = check_state(new, fine_solver.state_shape, who=who, dtype=fine.dtype)
                    frame = restricted(new) if step + 1 >= recipe.warmup_steps else None
                    with guard.critical():  # the step counter, the state and the frame change together
                        fine, step = new, step + 1
                        if frame is not None:
                            frames.append(frame)
                    bar.update(1)
                    if step % recipe.checkpoint_every == 0 and step < total:
                        _save_partial(ckpt, step=step, fine=fine, frames=frames, key=key)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the progress of every committed step
            with guard.critical():  # a second signal waits until this save is done
                _save_partial(ckpt, step=step, fine=fine, frames=frames, key=key)
            raise
        finally:
            bar.close()

        attrs: dict[str, Any] = {
            "recipe": recipe,
            "hash": key,
            "code": code,
            "solver": _describe(coarse_solver),
            "reference_solver": _describe(fine_solver),
            "source_resolution": recipe.source_resolution,
            "reference_resolution": recipe.reference_resolution,
            "warmup_steps": recipe.warmup_steps,
            "seed": recipe.seed,
            "versions": environment(),
            "generation_seconds_this_run": time.perf_counter() - start,
        }
        write_dataset(
            out,
            state=np.stack(frames, axis=1),
            params=params.double().numpy(),
            split=split,
            valid_mask=_valid_mask(coarse_solver),
            param_names=recipe.param_names,
            attrs=attrs,
        )
        ckpt.unlink(missing_ok=True)
