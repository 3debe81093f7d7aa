"""The whole mutable state of one training run, as one object.

:class:`TrainState` owns the model, the optimizer, the LR scheduler, the random
generators (the window sampler's, the gradient sources' probe stream and
torch's global one), the gradient sources (one per unroll length, each with its
estimator's state), the fault counts and the loop's counters. Checkpoint,
resume, the rollback of an interrupted iteration and the redo of an iteration
that lost batch members are each one call:

- :meth:`TrainState.state_dict` / :meth:`TrainState.load_state_dict`: the
  checkpoint (tensors + JSON values), checked field by field on load against
  the objects it is loaded into, so a corrupt or hand-edited checkpoint gives
  one line naming the field (:class:`~sciml_zoo.errors.DataError`);
- :meth:`TrainState.snapshot` / :meth:`TrainState.restore`: what an iteration
  changes outside the optimizer step (generators, gradient sources, fault
  counts, the solver-step counter), taken at its start and put back if it is
  interrupted or redone.

A new piece of run state is added in one place (here), not in four.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch

from sciml_zoo.checkpoint import (
    CheckpointFieldError,
    check_count,
    check_like,
    check_number,
    check_optimizer_state,
    check_plain,
    load_checkpoint,
    save_checkpoint,
)
from sciml_zoo.config import TrainConfig
from sciml_zoo.errors import ConfigError, DataError
from sciml_zoo.solver import StepCounter
from sciml_zoo.train.gradients import GradientSource
from sciml_zoo.train.queries import FaultCounts

__all__ = ["TrainState", "Stateful", "make_optimizer", "STATE_FIELDS"]


class Stateful(Protocol):
    """A piece of run state with torch's ``state_dict`` contract (tensors and JSON values)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


STATE_FIELDS = tuple(
    "model optimizer scheduler generator probe_generator torch_rng gradient fault_counts iteration wall_s log "
    "skipped_in_a_row solver_steps".split()
)
"""The fields of a checkpoint that :meth:`TrainState.state_dict` writes, in load order."""


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> tuple[Any, Any]:
    """The ``torch.optim`` optimizer and optional LR scheduler that ``cfg`` names."""
    try:
        opt = getattr(torch.optim, cfg.optimizer)(model.parameters(), lr=cfg.lr, **cfg.optimizer_options)
        sched = None
        if cfg.scheduler is not None:
            sched = getattr(torch.optim.lr_scheduler, cfg.scheduler)(opt, **cfg.scheduler_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad train.optimizer_options/scheduler_options: {exc}") from None
    return opt, sched


class TrainState:
    """Model, optimizer, scheduler, generators, gradient sources, fault counts and counters of one run.

    Args:
        cfg: the run's training config (optimizer, scheduler, seed, limits).
        model: the correction network (already on its device).
        make_source: builds the gradient source for an unroll length; called
            once per length (one unless a curriculum grows the unroll).
        counts: the run's fault counts (shared with the guarded query step).
        counter: counts solver sample-steps (shared with the gradient sources).
        parts: further run state by name (e.g. the loop's dropped-member
            tallies), each with ``state_dict`` / ``load_state_dict``:
            checkpointed under ``parts.<name>``, checked against its fresh
            ``state_dict()`` on load, and rolled back with an interrupted
            iteration. Adding one here is all a new piece of state needs.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: torch.nn.Module,
        make_source: Callable[[int], GradientSource],
        counts: FaultCounts,
        counter: StepCounter,
        parts: Mapping[str, Stateful] | None = None,
    ) -> None:
        self.cfg, self.model, self._make_source = cfg, model, make_source
        self.parts = dict(parts or {})
        self.optimizer, self.scheduler = make_optimizer(cfg, model)
        self.generator = torch.Generator().manual_seed(cfg.seed + 1)  # the window sampler
        # the gradient source draws (probes, directions, subsets) from its own stream, so every method
        # sees the same windows at the same seed: comparisons between methods are paired
        self.probe_generator = torch.Generator().manual_seed(cfg.seed + 2)
        self.sources: dict[int, GradientSource] = {}
        self.counts, self.counter = counts, counter
        self.iteration, self.wall_s, self.skipped_in_a_row = 0, 0.0, 0
        self.log: list[dict[str, Any]] = []

    def source(self, steps: int) -> GradientSource:
        """The gradient source for windows of ``steps`` unrolled steps (built on first use).

        A new stage's source starts from what the latest earlier one learned
        (:meth:`~sciml_zoo.estimators.Estimator.inherit`: an emulator's fit, not
        its counters); a checkpoint restores each stage's own state over it.
        """
        if steps not in self.sources:
            source = self._make_source(steps)
            if self.sources:
                source.inherit(self.sources[next(reversed(self.sources))])
            self.sources[steps] = source
        return self.sources[steps]

    # -- checkpoint ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds about the run (tensors and JSON values; ``STATE_FIELDS``)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(),
            "probe_generator": self.probe_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "gradient": {str(n): s.state_dict() for n, s in self.sources.items()},
            "fault_counts": self.counts.as_dict(),
            "iteration": self.iteration,
            "wall_s": self.wall_s,
            "log": self.log,
            "skipped_in_a_row": self.skipped_in_a_row,
            "solver_steps": self.counter.sample_steps,
            **({"parts": {name: part.state_dict() for name, part in self.parts.items()}} if self.parts else {}),
        }

    def save(self, path: Path, envelope: Mapping[str, Any]) -> None:
        """Write the checkpoint at ``path``: ``envelope`` (``config``, ``hash``) and :meth:`state_dict`."""
        save_checkpoint(path, {**envelope, **self.state_dict()})

    def resume(self, path: Path, envelope: Mapping[str, Any]) -> None:
        """Load the checkpoint at ``path``, written under the same ``envelope`` (config and hash).

        Raises:
            ConfigError: the checkpoint was written by another config, dataset
                or package versions.
            DataError: it is missing, not a checkpoint, or a field is corrupt
                (one line naming the field).
        """
        ckpt = load_checkpoint(path)
        if ckpt["config"] != {**envelope["config"], "data": ckpt["config"].get("data")}:
            raise ConfigError(f"{path.parent} was trained with a different config; resume with the same one")
        if ckpt.get("hash") != envelope["hash"]:
            raise ConfigError(
                f"{path.parent} was trained on another dataset or with other package versions (hash "
                f"{ckpt.get('hash')} != {envelope['hash']}); resume it where it started, or start a new run in "
                "another --out"
            )
        try:
            self.load_state_dict(ckpt)
        except CheckpointFieldError as exc:
            raise DataError(
                f"checkpoint {str(path)!r} is corrupt: {exc}; delete the run directory and retrain"
            ) from None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned, each field checked before it is loaded.

        Raises:
            CheckpointFieldError: (a :class:`~sciml_zoo.errors.DataError`) a
                field is missing or holds the wrong thing; its message names it.
        """
        missing = [key for key in STATE_FIELDS + (("parts",) if self.parts else ()) if key not in state]
        if missing:
            also = f" (and {', '.join(missing[1:])})" if missing[1:] else ""
            raise CheckpointFieldError(missing[0], f"is missing{also}")
        cfg = self.cfg
        check_like("model", state["model"], self.model.state_dict())
        check_optimizer_state("optimizer", state["optimizer"], self.optimizer)
        check_like("scheduler", state["scheduler"], None if self.scheduler is None else self.scheduler.state_dict())
        if self.scheduler is None and state["scheduler"] is not None:
            raise CheckpointFieldError("scheduler", "holds a scheduler state, but train.scheduler is not set")
        for key in ("generator", "probe_generator"):
            check_like(key, state[key], torch.Generator().get_state())
        check_like("torch_rng", state["torch_rng"], torch.get_rng_state())
        check_like("fault_counts", state["fault_counts"], self.counts.as_dict())
        for key, value in state["fault_counts"].items():
            check_count(f"fault_counts.{key}", value)
        iteration = check_count("iteration", state["iteration"], high=cfg.iterations)
        log = state["log"]
        if not isinstance(log, list) or len(log) != iteration or not all(isinstance(r, dict) for r in log):
            got = f"a list of {len(log)}" if isinstance(log, list) else f"{log!r:.40}"
            raise CheckpointFieldError("log", f"must be a list of {iteration} rows (one per iteration), got {got}")
        check_plain("log", log)
        check_number("wall_s", state["wall_s"])
        check_count("skipped_in_a_row", state["skipped_in_a_row"], high=cfg.max_consecutive_failures)
        check_count("solver_steps", state["solver_steps"])
        gradient = self._check_gradient(state["gradient"])
        if self.parts:
            check_like("parts", state["parts"], {n: p.state_dict() for n, p in self.parts.items()})

        self.model.load_state_dict(state["model"])
        for key, load in (
            ("optimizer", self.optimizer.load_state_dict),
            ("scheduler", None if self.scheduler is None else self.scheduler.load_state_dict),
            ("generator", self.generator.set_state),
            ("probe_generator", self.probe_generator.set_state),
            ("torch_rng", torch.set_rng_state),
        ):
            if load is not None:
                _load(key, load, state[key])
        for steps, source_state in gradient.items():
            _load(f"gradient.{steps}", self.source(steps).load_state_dict, source_state)
        for name, part in self.parts.items():
            _load(f"parts.{name}", part.load_state_dict, state["parts"][name])
        self.counts.load(state["fault_counts"])
        self.iteration, self.wall_s = iteration, float(state["wall_s"])
        self.log, self.skipped_in_a_row = list(log), state["skipped_in_a_row"]
        self.counter.sample_steps = state["solver_steps"]

    def _check_gradient(self, value: Any) -> dict[int, Any]:
        if not isinstance(value, dict):
            raise CheckpointFieldError("gradient", f"must be a table (unroll length -> state), got {value!r:.40}")
        out = {}
        for key, source_state in value.items():
            steps = int(key) if isinstance(key, str) and key.isdigit() else 0
            if not 1 <= steps <= self.cfg.steps:
                raise CheckpointFieldError(f"gradient.{key}", f"is not an unroll length in [1, {self.cfg.steps}]")
            check_like(f"gradient.{key}", source_state, self.source(steps).state_dict(), extra_keys=True)
            out[steps] = source_state
        return out

    # -- rollback ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What an iteration changes besides weights, optimizer and counters (copied, never aliased)."""
        return {
            "generator": self.generator.get_state(),
            "probe_generator": self.probe_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "gradient": {n: copy.deepcopy(s.state_dict()) for n, s in self.sources.items()},
            "counts": self.counts.as_dict(),
            "solver_steps": self.counter.sample_steps,
            "parts": {name: copy.deepcopy(part.state_dict()) for name, part in self.parts.items()},
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Undo an interrupted iteration: everything :meth:`snapshot` took back as it was."""
        self.generator.set_state(snap["generator"])
        self.probe_generator.set_state(snap["probe_generator"])
        torch.set_rng_state(snap["torch_rng"])
        self.restore_gradient(snap)
        self.counts.load(snap["counts"])
        self.counter.sample_steps = snap["solver_steps"]
        for name, part in self.parts.items():
            part.load_state_dict(copy.deepcopy(snap["parts"][name]))

    def restore_gradient(self, snap: dict[str, Any]) -> None:
        """Put every gradient source back as it was at ``snap`` (one built since is dropped: built anew)."""
        for n in [n for n in self.sources if n not in snap["gradient"]]:
            del self.sources[n]
        for n, s in self.sources.items():
            s.load_state_dict(copy.deepcopy(snap["gradient"][n]))


def _load(field: str, load: Callable[[Any], Any], value: Any) -> None:
    """``load(value)``; whatever the loader raises becomes one line naming ``field``.

    A loader that checks its own fields raises
    :class:`~sciml_zoo.checkpoint.CheckpointFieldError` with a field relative to
    its state (``emulator.net.0.weight``); it is reported under ``field``.
    """
    try:
        load(value)
    except CheckpointFieldError as exc:
        raise CheckpointFieldError(f"{field}.{exc.field}", exc.problem) from None
    except DataError as exc:
        raise CheckpointFieldError(field, f"cannot be loaded ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - torch and estimators raise many types for a bad state
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointFieldError(field, f"cannot be loaded ({type(exc).__name__}: {first[:120]})") from None
