"""The training loop: sample windows, get a gradient, ``optimizer.step()``.

A plain PyTorch loop (no Lightning). What differs between NON, FO-SOL and the
ZO-SOL variants is only *where the gradient comes from*
(:mod:`sciml_zoo.train.gradients`); data, loss, optimizer and schedule are
shared. Checkpoints (model, optimizer, scheduler, RNG, counters, log) are
written atomically every ``checkpoint_every`` iterations and on Ctrl-C, and
``resume=True`` continues bit-exactly where the run stopped.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.data.store import open_dataset
from sciml_zoo.errors import ConfigError, DataError
from sciml_zoo.nn import CorrectionNet, Normalization, build_body
from sciml_zoo.provenance import atomic_path, environment, to_jsonable, write_json
from sciml_zoo.registry import make_solver
from sciml_zoo.solver import Solver, StepCounter
from sciml_zoo.train.config import ModelConfig, TrainConfig
from sciml_zoo.train.gradients import make_gradient
from sciml_zoo.train.objective import WindowSampler

__all__ = ["RunConfig", "TrainingData", "load_training_data", "build_model", "train", "load_model"]


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run: dataset file, model, training."""

    data: str
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()


@dataclass(frozen=True)
class TrainingData:
    """Tensors and solver needed for training and evaluation on one dataset."""

    states: torch.Tensor  # (S, T, C, H, W) all simulations
    params: torch.Tensor  # (S, P)
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    mask: torch.Tensor  # (C, H, W) bool
    recipe: DatasetRecipe
    attrs: dict[str, Any]


def recipe_from_attrs(attrs: dict[str, Any]) -> DatasetRecipe:
    """Rebuild the :class:`DatasetRecipe` stored in a dataset's attributes."""
    import json

    from sciml_zoo.config_io import from_dict

    raw = attrs["recipe"]
    return from_dict(DatasetRecipe, json.loads(raw) if isinstance(raw, str) else raw, where="recipe")


def load_training_data(path: str | Path) -> TrainingData:
    """Open a dataset file and split it by its ``split`` variable."""
    ds = open_dataset(path)
    split = ds["split"].values
    return TrainingData(
        states=torch.from_numpy(ds["state"].values),
        params=torch.from_numpy(ds["params"].values).float(),
        train_idx=torch.from_numpy((split == "train").nonzero()[0]),
        test_idx=torch.from_numpy((split == "test").nonzero()[0]),
        mask=torch.from_numpy(ds["valid_mask"].values),
        recipe=recipe_from_attrs(ds.attrs),
        attrs=dict(ds.attrs),
    )


def source_solver(data: TrainingData) -> Solver:
    """The low-fidelity solver the dataset was made for."""
    return make_solver(data.recipe.solver, **data.recipe.solver_kwargs("source"))


def build_model(config: ModelConfig, data: TrainingData, *, seed: int) -> CorrectionNet:
    """A freshly initialised correction network with training-set normalisation."""
    torch.manual_seed(seed)
    c, p = data.states.shape[2], data.params.shape[1]
    body = build_body(
        config.arch,
        c + p,
        c,
        width=config.width,
        kernel_size=config.kernel_size,
        blocks=config.blocks,
        depth=config.depth,
        activation=config.activation,
        dim=data.mask.dim() - 1,
        padding_mode=config.padding,
    )
    norm = Normalization.from_training_data(data.states[data.train_idx], data.params[data.train_idx], data.mask)
    return CorrectionNet(body, norm, data.mask, zero_mean=config.zero_mean)


def load_model(run_dir: str | Path, data: TrainingData) -> CorrectionNet:
    """Load the final (or latest) weights of a training run."""
    run_dir = Path(run_dir)
    ckpt = _load_checkpoint(run_dir / "checkpoint.pt")
    from sciml_zoo.config_io import from_dict

    model = build_model(from_dict(ModelConfig, ckpt["config"]["model"], where="[model]"), data, seed=0)
    model.load_state_dict(ckpt["model"])
    return model


def _load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"checkpoint {path} not found; train first with `sciml-zoo train`")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a torn/corrupt file
        raise DataError(f"checkpoint {path} is corrupt ({exc}); delete the run directory and retrain") from exc


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[Any, Any]:
    try:
        opt = getattr(torch.optim, cfg.optimizer)(model.parameters(), lr=cfg.lr, **cfg.optimizer_options)
        sched = None
        if cfg.scheduler is not None:
            sched = getattr(torch.optim.lr_scheduler, cfg.scheduler)(opt, **cfg.scheduler_options)
    except TypeError as exc:
        raise ConfigError(f"bad optimizer/scheduler options: {exc}") from exc
    return opt, sched


def _write_log(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["iteration", "loss", "solver_steps", "wall_s"])
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    data: TrainingData | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train one correction network; return the run summary.

    Args:
        config: dataset, model and training configuration.
        run_dir: output directory (``config.json``, ``checkpoint.pt``,
            ``log.csv``, ``summary.json``).
        resume: continue from ``run_dir/checkpoint.pt``.
        progress: show a progress bar with the loss.
        data: already loaded dataset (saves re-reading it).
        stop_after: stop (with a checkpoint) after this many iterations in
            this call — used to test resume.
    """
    cfg = config.train
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    if not resume and ckpt_path.exists():
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    data = data or load_training_data(config.data)
    solver = source_solver(data)
    model = build_model(config.model, data, seed=cfg.seed)
    opt, sched = _make_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    counter = StepCounter()
    gradient = make_gradient(
        cfg,
        model,
        solver,
        counter,
        solver_spec=(data.recipe.solver, data.recipe.solver_kwargs("source")),
    )
    sampler = WindowSampler(data.states[data.train_idx], data.params[data.train_idx], steps=cfg.steps)
    start, elapsed, log = 0, 0.0, []
    record = {
        "config": to_jsonable(config),
        "seed": cfg.seed,
        "versions": environment(),
        "dataset": {k: data.attrs.get(k) for k in ("path", "recipe", "versions")},
    }

    if resume:
        ckpt = _load_checkpoint(ckpt_path)
        if ckpt["config"] != to_jsonable(replace(config, data=ckpt["config"]["data"])):
            raise ConfigError(f"{run_dir} was trained with a different config; resume with the same one")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        gradient.load_state_dict(ckpt["gradient"])
        start, elapsed, log = ckpt["iteration"], ckpt["wall_s"], ckpt["log"]
        counter.sample_steps = ckpt["solver_steps"]
    else:
        write_json(run_dir / "config.json", record)

    def save(iteration: int) -> None:
        state = {
            "config": to_jsonable(config),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "generator": gen.get_state(),
            "gradient": gradient.state_dict(),
            "iteration": iteration,
            "wall_s": elapsed,
            "log": log,
            "solver_steps": counter.sample_steps,
        }
        with atomic_path(ckpt_path) as tmp:
            torch.save(state, tmp)
        _write_log(run_dir / "log.csv", log)

    end = cfg.iterations if stop_after is None else min(cfg.iterations, start + stop_after)
    bar = tqdm(
        range(start, end),
        initial=start,
        total=cfg.iterations,
        disable=not progress,
        desc=f"train {cfg.label}",
    )
    it = start
    try:
        for it in bar:
            t0 = time.perf_counter()
            windows = sampler.sample(cfg.batch_size, gen)
            opt.zero_grad(set_to_none=True)
            loss = gradient(windows, gen)
            opt.step()
            if sched is not None:
                sched.step()
            elapsed += time.perf_counter() - t0
            log.append(
                {
                    "iteration": it + 1,
                    "loss": float(loss),
                    "solver_steps": counter.sample_steps,
                    "wall_s": round(elapsed, 4),
                }
            )
            bar.set_postfix(loss=f"{float(loss):.4g}", steps=counter.sample_steps)
            if (it + 1) % cfg.checkpoint_every == 0:
                save(it + 1)
        it = end
    except KeyboardInterrupt:
        save(it)
        raise
    finally:
        bar.close()
    save(it)
    summary = {
        **record,
        "label": cfg.label,
        "iterations_done": it,
        "final_loss": log[-1]["loss"] if log else None,
        "train_solver_steps": counter.sample_steps,
        "train_wall_s": elapsed,
    }
    if it >= cfg.iterations:
        write_json(run_dir / "summary.json", summary)
    return summary
