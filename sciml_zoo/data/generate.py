"""Generate reference datasets: run high-fidelity simulations, restrict, store.

All simulations of a recipe (train and test) advance together as one batch, so
batched adapters pay one call per step. Every ``checkpoint_every`` steps the
high-resolution state and the frames kept so far are written atomically to
``<out>.partial``; a rerun after a kill resumes from there and produces the
same file bit for bit as an uninterrupted run (the solvers are deterministic).
"""

from __future__ import annotations

import json
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
from sciml_zoo.provenance import atomic_path, environment, to_jsonable
from sciml_zoo.registry import make_solver_from_file
from sciml_zoo.solver import check_state

__all__ = ["generate_dataset", "partial_path"]


def partial_path(out: str | Path) -> Path:
    """Path of the resumable checkpoint that belongs to dataset file ``out``."""
    return Path(f"{out}.partial")


def _save_partial(path: Path, *, step: int, fine: torch.Tensor, frames: list[np.ndarray], key: str) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["step"] = step
        f.attrs["recipe_key"] = key
        f.create_dataset("fine", data=fine.numpy())
        if frames:
            f.create_dataset("frames", data=np.stack(frames, axis=1))


def _load_partial(path: Path, key: str) -> tuple[int, torch.Tensor, list[np.ndarray]] | None:
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs["recipe_key"] != key:
                raise DataError(f"{path} belongs to a different recipe; delete it to start over")
            step = int(f.attrs["step"])
            fine = torch.from_numpy(f["fine"][...])
            frames = list(np.moveaxis(f["frames"][...], 1, 0)) if "frames" in f else []
    except DataError:
        raise
    except (OSError, KeyError) as exc:
        raise DataError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc
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
        out: destination file. If it exists and ``overwrite`` is false, nothing
            is done (the file is complete, because writes are atomic).
        progress: show a tqdm progress bar.
        overwrite: regenerate even if ``out`` exists.

    Returns:
        The path of the dataset file.
    """
    out = Path(out)
    if out.is_file() and not overwrite:
        return out
    origin = f"recipe {recipe.name!r}"  # a file: no solver options that run programs unless the user allows
    fine_solver = make_solver_from_file(recipe.solver, recipe.solver_kwargs("reference"), origin=origin)
    coarse_solver = make_solver_from_file(recipe.solver, recipe.solver_kwargs("source"), origin=origin)
    params = torch.tensor(recipe.train_params + recipe.test_params, dtype=torch.float32)
    split = ["train"] * len(recipe.train_params) + ["test"] * len(recipe.test_params)
    key = json.dumps(to_jsonable(recipe), sort_keys=True)

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

    def keep(state: torch.Tensor) -> None:
        coarse = hooks.restrict(state, tuple(recipe.source_resolution))
        check_state(coarse, coarse_solver.state_shape, who=f"{recipe.solver}.restrict")
        frames.append(coarse.numpy().astype(np.float32))

    start = time.perf_counter()
    if step == 0 and recipe.warmup_steps == 0 and not frames:
        keep(fine)
    bar = tqdm(total=total, initial=step, disable=not progress, desc=f"generate {recipe.name}")
    try:
        with torch.no_grad():
            while step < total:
                fine = check_state(fine_solver.step(fine, params), fine_solver.state_shape, who=who, dtype=fine.dtype)
                step += 1
                if step >= recipe.warmup_steps:
                    keep(fine)
                bar.update(1)
                if step % recipe.checkpoint_every == 0 and step < total:
                    _save_partial(ckpt, step=step, fine=fine, frames=frames, key=key)
    except KeyboardInterrupt:
        _save_partial(ckpt, step=step, fine=fine, frames=frames, key=key)
        raise
    finally:
        bar.close()

    attrs: dict[str, Any] = {
        "recipe": recipe,
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
    return out
