"""The training loop: sample windows, get a gradient, ``optimizer.step()``.

A plain PyTorch loop (no Lightning). What differs between NON, FO-SOL and the
ZO-SOL variants is only *where the gradient comes from*
(:mod:`sciml_zoo.train.gradients`); data, loss, optimizer and schedule are
shared. Data loading lives in :mod:`sciml_zoo.data.loading`, models and
checkpoint files in :mod:`sciml_zoo.runs`.

Guarantees:

- **Exact resume.** Every random stream (the window sampler's generator, which
  estimators draw from too, and torch's global generator) is in the
  checkpoint. A checkpoint written on Ctrl-C or SIGTERM describes the last
  *completed* iteration: the interrupted one is rolled back (generator and
  gradient-source state restored to its start; weights and optimizer change
  only in a section signals cannot cut). ``kill -9`` loses the iterations
  since the last periodic checkpoint, which is always whole (atomic writes).
- **Divergence** (a non-finite loss, gradient or weight) stops the run at once
  with :class:`~sciml_zoo.errors.DivergenceError`; the checkpoint on disk
  stays the last finite one.
- **Faults.** A :class:`~sciml_zoo.errors.QueryFailure` naming failed batch
  members redoes the iteration without them (the loss is the mean over the
  rest); with none left the iteration is skipped; the run stops after
  ``max_consecutive_failures`` skipped iterations in a row.
"""

from __future__ import annotations

import copy
import csv
import io
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sciml_zoo.config import TrainConfig
from sciml_zoo.data.loading import Dataset, load_dataset, source_solver
from sciml_zoo.errors import ConfigError, DivergenceError, QueryFailure, SolverError
from sciml_zoo.provenance import atomic_path, environment, to_jsonable, write_json
from sciml_zoo.runs import (
    RunConfig,
    build_model,
    clean_stale_temp_files,
    config_hash,
    load_checkpoint,
    run_lock,
    save_checkpoint,
)
from sciml_zoo.solver import StepCounter
from sciml_zoo.train.interrupts import interruptible
from sciml_zoo.train.objective import Windows, WindowSampler
from sciml_zoo.train.queries import FaultCounts, make_gradient_source, make_query_step, on_device

__all__ = ["train"]


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[Any, Any]:
    try:
        opt = getattr(torch.optim, cfg.optimizer)(model.parameters(), lr=cfg.lr, **cfg.optimizer_options)
        sched = None
        if cfg.scheduler is not None:
            sched = getattr(torch.optim.lr_scheduler, cfg.scheduler)(opt, **cfg.scheduler_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad train.optimizer_options/scheduler_options: {exc}") from None
    return opt, sched


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    names = ["iteration", "loss", "solver_steps", "wall_s", "unroll"]
    names += sorted({k for r in rows for k in r} - set(names))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _clone(state: Any) -> Any:
    """A deep copy of a state dict (tensors cloned, so later in-place updates cannot alias it)."""
    return copy.deepcopy(state)


@dataclass
class _Run:
    """The mutable state of one run: what a checkpoint holds besides weights and optimizer."""

    iteration: int = 0
    wall_s: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    skipped_in_a_row: int = 0


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    data: Dataset | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train one correction network; return the run summary.

    Args:
        config: dataset, model and training configuration.
        run_dir: output directory (``config.json``, ``checkpoint.pt``,
            ``log.csv``, ``summary.json``), locked while training.
        resume: continue from ``run_dir/checkpoint.pt``.
        progress: show a progress bar with the loss.
        data: already loaded dataset (saves re-reading it).
        stop_after: stop (with a checkpoint) after this many iterations in
            this call — used to test resume.
    """
    run_dir = Path(run_dir)
    with run_lock(run_dir):
        clean_stale_temp_files(run_dir)
        return _train_locked(config, run_dir, resume=resume, progress=progress, data=data, stop_after=stop_after)


def _train_locked(
    config: RunConfig, run_dir: Path, *, resume: bool, progress: bool, data: Dataset | None, stop_after: int | None
) -> dict[str, Any]:
    cfg = config.train
    ckpt_path = run_dir / "checkpoint.pt"
    if not resume and ckpt_path.exists():
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    data = data or load_dataset(config.data)
    device = torch.device(cfg.device)
    solver = on_device(source_solver(data), device)
    model = build_model(config.model, data, seed=cfg.seed).to(device)
    opt, sched = _make_optimizer(cfg, model)
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # the window sampler
    # the gradient source draws (probes, directions, subsets) from its own stream, so every method
    # sees the same windows at the same seed: comparisons between methods are paired
    probe_gen = torch.Generator().manual_seed(cfg.seed + 2)
    counter, counts = StepCounter(), FaultCounts()
    spec = (data.recipe.solver, data.recipe.solver_kwargs("source"))
    sources: dict[int, Any] = {}  # gradient source per unroll length (one unless curriculum)
    query_step = None if cfg.method == "fo-sol" else make_query_step(cfg, solver, spec, counts)

    def source(steps: int) -> Any:
        if steps not in sources:
            sources[steps] = make_gradient_source(replace(cfg, unroll=steps), model, solver, counter, query_step)
        return sources[steps]

    train_split = data.train
    samplers: dict[int, WindowSampler] = {}  # one per unroll length (several with a curriculum)
    run = _Run()
    record = {
        "config": to_jsonable(config),
        "seed": cfg.seed,
        "versions": environment(),
        "dataset": {k: data.attrs.get(k) for k in ("path", "recipe", "versions")},
        "hash": config_hash(config, data.hash),
    }
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["config"] != to_jsonable(replace(config, data=ckpt["config"]["data"])):
            raise ConfigError(f"{run_dir} was trained with a different config; resume with the same one")
        if ckpt.get("hash") != record["hash"]:
            raise ConfigError(
                f"{run_dir} was trained on another dataset or with other package versions (hash {ckpt.get('hash')} "
                f"!= {record['hash']}); resume it where it started, or start a new run in another --out"
            )
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        gen.set_state(ckpt["generator"])
        probe_gen.set_state(ckpt["probe_generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        for steps, state in ckpt["gradient"].items():
            source(int(steps)).load_state_dict(state)
        counts.load(ckpt["fault_counts"])
        run = _Run(ckpt["iteration"], ckpt["wall_s"], list(ckpt["log"]), ckpt["skipped_in_a_row"])
        counter.sample_steps = ckpt["solver_steps"]
    else:
        write_json(run_dir / "config.json", record)

    def save() -> None:
        state = {
            "config": to_jsonable(config),
            "hash": record["hash"],
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None,
            "generator": gen.get_state(),
            "probe_generator": probe_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "gradient": {str(n): s.state_dict() for n, s in sources.items()},
            "fault_counts": counts.as_dict(),
            "iteration": run.iteration,
            "wall_s": run.wall_s,
            "log": run.log,
            "skipped_in_a_row": run.skipped_in_a_row,
            "solver_steps": counter.sample_steps,
        }
        save_checkpoint(ckpt_path, state)
        _write_log(run_dir / "log.csv", run.log)

    def snapshot() -> dict[str, Any]:
        return {
            "generator": gen.get_state(),
            "probe_generator": probe_gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "gradient": {n: _clone(s.state_dict()) for n, s in sources.items()},
            "counts": counts.as_dict(),
            "solver_steps": counter.sample_steps,
        }

    def restore(snap: dict[str, Any]) -> None:
        gen.set_state(snap["generator"])
        probe_gen.set_state(snap["probe_generator"])
        torch.set_rng_state(snap["torch_rng"])
        for n, s in sources.items():
            if n in snap["gradient"]:
                s.load_state_dict(_clone(snap["gradient"][n]))
        counts.load(snap["counts"])
        counter.sample_steps = snap["solver_steps"]

    def gradient_with_drops(windows: Windows, steps: int, snap: dict[str, Any]) -> tuple[torch.Tensor | None, str]:
        """The gradient of the windows whose queries succeed; ``None`` if none do."""
        keep = list(range(len(windows.initial)))
        before_probes = probe_gen.get_state()
        while True:
            opt.zero_grad(set_to_none=True)
            try:
                batch = windows if len(keep) == len(windows.initial) else windows.subset(torch.tensor(keep))
                return source(steps)(batch, probe_gen), ""
            except QueryFailure as failure:
                dropped = {m % len(keep) for m in failure.members} if failure.members else set(range(len(keep)))
                keep = [k for i, k in enumerate(keep) if i not in dropped]
                counts.add("dropped_members", len(dropped))
                probe_gen.set_state(before_probes)  # the redo draws the same random numbers
                for n, s in sources.items():  # and starts from the same estimator state
                    if n in snap["gradient"]:
                        s.load_state_dict(_clone(snap["gradient"][n]))
                if not keep:
                    return None, failure.last_error

    def check_finite(loss: torch.Tensor, it: int) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        bad = "loss" if not bool(torch.isfinite(loss)) else "" if bool(torch.isfinite(norm)) else "gradient"
        if bad:
            raise DivergenceError(
                f"{cfg.label} diverged at iteration {it} ({bad} {float(loss) if bad == 'loss' else float(norm)}); "
                f"lower the learning rate (train.lr) or set train.grad_clip; last finite checkpoint kept in {ckpt_path}"
            )

    end = cfg.iterations if stop_after is None else min(cfg.iterations, run.iteration + stop_after)
    bar = tqdm(total=cfg.iterations, initial=run.iteration, disable=not progress, desc=f"train {cfg.label}")
    try:
        with interruptible() as guard:
            while run.iteration < end:
                snap = snapshot()
                try:
                    t0 = time.perf_counter()
                    steps = cfg.unroll_at(run.iteration)
                    if steps not in samplers:
                        samplers[steps] = WindowSampler(train_split.states, train_split.params, steps=steps)
                    windows = samplers[steps].sample(cfg.batch_size, gen).to(device)
                    loss, last_error = gradient_with_drops(windows, steps, snap)
                    if loss is not None:
                        check_finite(loss, run.iteration + 1)
                except BaseException:
                    with guard.critical():
                        restore(snap)  # the iteration did not happen
                    raise
                with guard.critical():
                    if loss is not None:
                        opt.step()
                        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                            raise DivergenceError(
                                f"{cfg.label} diverged at iteration {run.iteration + 1} (non-finite weights after "
                                f"the optimizer step); lower the learning rate (train.lr) or set train.grad_clip; "
                                f"last finite checkpoint kept in {ckpt_path}"
                            )
                        if sched is not None:
                            sched.step()
                        run.skipped_in_a_row = 0
                    else:
                        counts.add("skipped_iterations", 1)
                        run.skipped_in_a_row += 1
                    run.wall_s += time.perf_counter() - t0
                    run.iteration += 1
                    run.log.append(
                        {
                            "iteration": run.iteration,
                            "loss": None if loss is None else float(loss),
                            "solver_steps": counter.sample_steps,
                            "wall_s": round(run.wall_s, 4),
                            "unroll": steps,
                            **counts.row(sources.values()),
                        }
                    )
                    bar.update(1)
                    if loss is not None:
                        bar.set_postfix(loss=f"{float(loss):.4g}", steps=counter.sample_steps)
                    if run.iteration % cfg.checkpoint_every == 0 or run.iteration == end:
                        save()
                    if run.skipped_in_a_row >= cfg.max_consecutive_failures:
                        save()
                        raise SolverError(
                            f"solver {solver.name!r} failed {run.skipped_in_a_row} iterations in a row (last error: "
                            f"{last_error}); training stopped at iteration {run.iteration}. Fix the solver or raise "
                            "train.max_consecutive_failures / train.retries, then rerun with --resume"
                        )
    except KeyboardInterrupt:
        save()  # the last completed iteration (the interrupted one was rolled back)
        raise
    except DivergenceError:
        if all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            save()  # the last completed iteration, whose weights are finite
        raise  # otherwise the checkpoint on disk is the last finite one
    finally:
        bar.close()
        if query_step is not None:
            query_step.close()
    summary = {
        **record,
        "label": cfg.label,
        "iterations_done": run.iteration,
        "final_loss": next((r["loss"] for r in reversed(run.log) if r["loss"] is not None), None),
        "train_solver_steps": counter.sample_steps,
        "train_wall_s": run.wall_s,
        "faults": counts.row(sources.values()),
    }
    if run.iteration >= cfg.iterations:
        write_json(run_dir / "summary.json", summary)
    return summary
