"""The training loop: sample windows, get a gradient, ``optimizer.step()``.

A plain PyTorch loop (no Lightning). What differs between NON, FO-SOL and the
ZO-SOL variants is only *where the gradient comes from*
(:mod:`sciml_zoo.train.gradients`); data, loss, optimizer and schedule are
shared. Data loading lives in :mod:`sciml_zoo.data.loading`, models in
:mod:`sciml_zoo.runs`, the run's state and its checkpoint in
:mod:`sciml_zoo.train.state` (files: :mod:`sciml_zoo.checkpoint`).

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

import csv
import io
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from tqdm.auto import tqdm

from sciml_zoo.config import RunConfig
from sciml_zoo.data.loading import Dataset, load_dataset, source_solver
from sciml_zoo.errors import ConfigError, DivergenceError, QueryFailure, SolverError
from sciml_zoo.provenance import atomic_path, environment, to_jsonable, write_json
from sciml_zoo.runs import build_model, clean_stale_temp_files, config_hash, run_lock
from sciml_zoo.solver import StepCounter
from sciml_zoo.train.interrupts import InterruptGuard, interruptible
from sciml_zoo.train.objective import Windows, WindowSampler
from sciml_zoo.train.queries import FaultCounts, MemberDrops, make_gradient_source, make_query_step, on_device
from sciml_zoo.train.state import TrainState

__all__ = ["train"]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    names = ["iteration", "loss", "solver_steps", "wall_s", "unroll"]
    names += sorted({k for r in rows for k in r} - set(names))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names)
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
    cfg.check_trajectory_length(data.train.states.shape[1], dataset=f"dataset {config.data!r}")
    device = torch.device(cfg.device)
    solver = on_device(source_solver(data), device)
    model = build_model(config.model, data, seed=cfg.seed).to(device)
    counter, counts = StepCounter(), FaultCounts()
    spec = (data.recipe.solver, data.recipe.solver_kwargs("source"))
    query_step = make_query_step(cfg, solver, spec, counts)  # every method's solver calls, FO-SOL's too
    try:

        def make_source(steps: int) -> Any:
            return make_gradient_source(replace(cfg, unroll=steps), model, solver, counter, query_step)

        # stops a run that keeps dropping one simulation (its queries fail for its parameters)
        drops = MemberDrops(data.train.params, data.recipe.param_names, cfg.max_dropped_share)
        state = TrainState(cfg, model, make_source, counts, counter, parts={"member_drops": drops})
        record = {
            "config": to_jsonable(config),
            "seed": cfg.seed,
            "versions": environment(),
            "dataset": {k: data.attrs.get(k) for k in ("path", "recipe", "versions")},
            "hash": config_hash(config, data.hash),
        }
        envelope = {"config": record["config"], "hash": record["hash"]}  # what a checkpoint must match
        if resume:
            state.resume(ckpt_path, envelope)
        else:
            write_json(run_dir / "config.json", record)
        _Loop(state, data, device, run_dir, solver.name, envelope).run(stop_after, progress)
    finally:
        query_step.close()
    summary = {
        **record,
        "label": cfg.label,
        "iterations_done": state.iteration,
        "final_loss": next((r["loss"] for r in reversed(state.log) if r["loss"] is not None), None),
        "train_solver_steps": counter.sample_steps,
        "train_wall_s": state.wall_s,
        "faults": counts.row(state.sources.values()),
    }
    if state.iteration >= cfg.iterations:
        write_json(run_dir / "summary.json", summary)
    return summary


class _Loop:
    """The iterations of one run: sample, gradient (redone without failed members), step, log, checkpoint."""

    def __init__(
        self, state: TrainState, data: Dataset, device: torch.device, run_dir: Path, solver: str, envelope: dict
    ) -> None:
        self.state, self.cfg, self.data, self.device, self.solver = state, state.cfg, data, device, solver
        self.run_dir, self.ckpt_path, self.envelope = run_dir, run_dir / "checkpoint.pt", envelope
        self.samplers: dict[int, WindowSampler] = {}  # one per unroll length (several with a curriculum)
        self.drops = cast(MemberDrops, state.parts["member_drops"])

    def save(self) -> None:
        self.state.save(self.ckpt_path, self.envelope)
        _write_log(self.run_dir / "log.csv", self.state.log)

    def run(self, stop_after: int | None, progress: bool) -> None:
        """Iterate to ``cfg.iterations`` (or ``stop_after`` more); save on the way out of every stop."""
        cfg, state = self.cfg, self.state
        end = cfg.iterations if stop_after is None else min(cfg.iterations, state.iteration + stop_after)
        bar = tqdm(total=cfg.iterations, initial=state.iteration, disable=not progress, desc=f"train {cfg.label}")
        try:
            with interruptible() as guard:
                while state.iteration < end:
                    self.iteration(guard, end, bar)
        except KeyboardInterrupt:
            self.save()  # the last completed iteration (the interrupted one was rolled back)
            raise
        except DivergenceError:
            if self._weights_finite():
                self.save()  # the last completed iteration, whose weights are finite
            raise  # otherwise the checkpoint on disk is the last finite one
        finally:
            bar.close()

    def iteration(self, guard: InterruptGuard, end: int, bar: Any) -> None:
        """One iteration; interrupted or failed before its optimizer step, it did not happen."""
        state = self.state
        snap = state.snapshot()
        try:
            t0 = time.perf_counter()
            steps = self.cfg.unroll_at(state.iteration)
            if steps not in self.samplers:
                self.samplers[steps] = WindowSampler(self.data.train.states, self.data.train.params, steps=steps)
            windows = self.samplers[steps].sample(self.cfg.batch_size, state.generator).to(self.device)
            loss, last_error = self.gradient(windows, steps, snap)
            if loss is not None:
                self.check_gradient(loss, state.iteration + 1)
        except BaseException:
            with guard.critical():
                state.restore(snap)  # the iteration did not happen
            raise
        with guard.critical():
            self.commit(loss, steps, t0, bar)
            if state.iteration % self.cfg.checkpoint_every == 0 or state.iteration == end:
                self.save()
            if state.skipped_in_a_row >= self.cfg.max_consecutive_failures:
                self.save()
                raise SolverError(
                    f"solver {self.solver!r} failed {state.skipped_in_a_row} iterations in a row (last error: "
                    f"{last_error}); training stopped at iteration {state.iteration}. Fix the solver or raise "
                    "train.max_consecutive_failures / train.retries, then rerun with --resume"
                )

    def gradient(self, windows: Windows, steps: int, snap: dict[str, Any]) -> tuple[torch.Tensor | None, str]:
        """The gradient of the windows whose queries succeed; ``None`` if none do."""
        state = self.state
        keep = list(range(len(windows.initial)))
        before_probes, last_error = state.probe_generator.get_state(), ""
        while True:
            state.optimizer.zero_grad(set_to_none=True)
            try:
                batch = windows if len(keep) == len(windows.initial) else windows.subset(torch.tensor(keep))
                loss = state.source(steps)(batch, state.probe_generator)
                self.drops.record(windows.params, keep, last_error)
                return loss, ""
            except QueryFailure as failure:
                dropped = {m % len(keep) for m in failure.members} if failure.members else set(range(len(keep)))
                keep = [k for i, k in enumerate(keep) if i not in dropped]
                state.counts.add("dropped_members", len(dropped))
                last_error = failure.last_error
                state.probe_generator.set_state(before_probes)  # the redo draws the same random numbers
                state.restore_gradient(snap)  # and starts from the same estimator state
                if not keep:
                    self.drops.record(windows.params, keep, last_error)
                    return None, failure.last_error

    def check_gradient(self, loss: torch.Tensor, it: int) -> None:
        """Clip the gradient (``train.grad_clip``); a non-finite loss or gradient stops the run."""
        params = list(self.state.model.parameters())
        if self.cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        bad = "loss" if not bool(torch.isfinite(loss)) else "" if bool(torch.isfinite(norm)) else "gradient"
        if bad:
            self.diverged(it, f"{bad} {float(loss) if bad == 'loss' else float(norm)}")

    def diverged(self, it: int, what: str) -> None:
        raise DivergenceError(
            f"{self.cfg.label} diverged at iteration {it} ({what}); lower the learning rate (train.lr) or set "
            f"train.grad_clip; last finite checkpoint kept in {self.ckpt_path}"
        )

    def _weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.state.model.parameters())

    def commit(self, loss: torch.Tensor | None, steps: int, t0: float, bar: Any) -> None:
        """The optimizer and scheduler step (or a skipped iteration) and the iteration's log row."""
        state = self.state
        if loss is not None:
            state.optimizer.step()
            if not self._weights_finite():
                self.diverged(state.iteration + 1, "non-finite weights after the optimizer step")
            if state.scheduler is not None:
                state.scheduler.step()
            state.skipped_in_a_row = 0
        else:
            state.counts.add("skipped_iterations", 1)
            state.skipped_in_a_row += 1
        state.wall_s += time.perf_counter() - t0
        state.iteration += 1
        state.log.append(
            {
                "iteration": state.iteration,
                "loss": None if loss is None else float(loss),
                "solver_steps": state.counter.sample_steps,
                "wall_s": round(state.wall_s, 4),
                "unroll": steps,
                **state.counts.row(state.sources.values()),
            }
        )
        bar.update(1)
        if loss is not None:
            bar.set_postfix(loss=f"{float(loss):.4g}", steps=state.counter.sample_steps)
