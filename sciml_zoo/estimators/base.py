"""The estimator base classes: frozen, validated options plus a small per-run state.

An estimator is chosen by constructing it, the way diffrax takes
``adjoint=RecursiveCheckpointAdjoint()``::

    est = Banded(radius=2)                      # or make_estimator("banded", {"radius": 2})
    cfg = TrainConfig(method="zo-sol", estimator=est)

Options are the fields of a frozen dataclass, checked in ``__post_init__``
(a bad value raises :class:`~sciml_zoo.errors.ConfigError` naming the value,
the key and the fix), so a config fails when it is read, before any solver
query. What an estimator learns while it runs (a fitted model, sparsity
ratios, the current coordinate subset, counters) is kept apart from the
options in a plain dict of tensors and JSON values: :meth:`Estimator.state_dict`
returns it for checkpoints and :meth:`Estimator.load_state_dict` restores it.
:meth:`Estimator.fresh` gives a copy with the same options and an empty state,
which is what a training run uses, so one config object can start many runs.

Two families share the base:

- :class:`SolverSpaceEstimator`: estimates the solver step's vector-Jacobian
  product ``J^T v`` inside one autograd function around the black-box step
  (:mod:`sciml_zoo.estimators.solver_space`); the network is differentiated
  exactly (Ma et al. 2024, arXiv 2404.11766).
- :class:`WeightSpaceEstimator`: estimates the gradient of the loss in the
  network's weights from loss queries and writes ``.grad`` (DeepZero, Chen et
  al., ICLR 2024).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sciml_zoo.errors import ConfigError
from sciml_zoo.solver import StepFn

__all__ = ["GAUGES", "Estimator", "ProbeContext", "SolverSpaceEstimator", "WeightSpaceEstimator", "merge_stats"]

GAUGES = frozenset(
    {"radius", "last_residual", "shrink_factor", "trusted", "check_error", "transpose_error", "stencil_error"}
    | {"check_norm", "queries_last"}
)
"""Estimator stats that are a level, not a count: never summed (:func:`merge_stats`)."""


def merge_stats(into: dict[str, Any], stats: Mapping[str, Any], *, latest: bool = False) -> dict[str, Any]:
    """Add numeric ``stats`` to ``into``: counts add up; gauges (:data:`GAUGES`) keep the largest or the latest.

    Merges the stats of the gradient sources of one run, one per curriculum
    stage in the order they were used (``latest=True``: a gauge is the stage in
    use's, not a finished stage's), or of several runs (seeds: the largest);
    ``into`` is updated and returned.
    """
    for key, value in stats.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if key in GAUGES:
                into[key] = value if latest else max(into.get(key, value), value)
            else:
                into[key] = into.get(key, 0) + value
    return into


class Estimator:
    """Base of every estimator: a frozen dataclass of options and a per-run state.

    Subclasses are ``@dataclass(frozen=True)`` and set the class attribute
    :attr:`name` (the registry name) and :attr:`space` (``"solver"`` or
    ``"weight"``).
    """

    name: ClassVar[str] = ""
    space: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_state", self.init_state())
        self.validate()

    # -- options -----------------------------------------------------------------
    def validate(self) -> None:
        """Check the options; raise :class:`ConfigError` naming value, key and fix."""

    def _fail(self, key: str, fix: str) -> None:
        raise ConfigError(f"estimator {self.name!r}: {key}={getattr(self, key)!r} is invalid; {fix}")

    def _need_int(self, key: str, low: int = 1, *, optional: bool = False) -> None:
        value = getattr(self, key)
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self._fail(key, f"use an integer >= {low}" + (" or None" if optional else ""))

    def _need_float(self, key: str, low: float, high: float = math.inf, *, open_low: bool = True) -> None:
        value = getattr(self, key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if open_low else value >= low) and value < high
        if not ok:
            bound = f"> {low:g}" if open_low else f">= {low:g}"
            self._fail(key, f"use a number {bound}" + (f" and < {high:g}" if math.isfinite(high) else ""))

    def _need_bool(self, key: str) -> None:
        if not isinstance(getattr(self, key), bool):
            self._fail(key, "use true or false")

    def _need_choice(self, key: str, choices: tuple[str, ...]) -> None:
        if getattr(self, key) not in choices:
            self._fail(key, f"use one of {', '.join(map(repr, choices))}")

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., **options}``: what configs and results record."""
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}  # type: ignore[arg-type]

    def short_name(self) -> str:
        """The name with every option that differs from its default: ``jacobian difference=forward``.

        Tables label methods with it, so two runs of one estimator with
        different options are told apart.
        """
        changed = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.init and f.default is not dataclasses.MISSING and value != f.default:
                changed.append(f"{f.name}={value:g}" if isinstance(value, float) else f"{f.name}={value}")
        return " ".join([self.name, *changed])

    def fresh(self) -> Estimator:
        """A copy with the same options and an empty per-run state."""
        return dataclasses.replace(self)  # type: ignore[type-var]

    def inherit(self, previous: Estimator) -> None:
        """Take what ``previous`` (the same estimator at an earlier curriculum stage) learned; default: nothing."""

    # -- per-run state -------------------------------------------------------------
    def init_state(self) -> dict[str, Any]:
        """The empty per-run state (tensors and JSON values only)."""
        return {}

    @property
    def state(self) -> dict[str, Any]:
        """The live per-run state (mutated by the estimator)."""
        return self._state  # type: ignore[attr-defined,no-any-return]

    def state_dict(self) -> dict[str, Any]:
        """A copy of the per-run state, for checkpoints (tensors and JSON values)."""
        return _copy(self.state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.state.clear()
        self.state.update(self.init_state())
        self.state.update(_copy(dict(state)))

    def stats(self) -> dict[str, Any]:
        """Counters worth logging (queries, checks, fallbacks); JSON values."""
        return {k: v for k, v in self.state.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _copy(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@dataclass(frozen=True)
class ProbeContext:
    """What a solver-space estimator may query at one wrapped step.

    Attributes:
        step: the (counted) black-box step ``(state, params) -> state``.
        state: the step's input ``(B, C, *spatial)``, detached.
        params: ``(B, P)`` physical parameters.
        output: ``step(state, params)`` ``(B, C, *spatial)``, detached.
        mask: ``(C, *spatial)`` bool of valid entries, or None (all valid).
        generator: the only source of randomness.
    """

    step: StepFn
    state: Tensor
    params: Tensor
    output: Tensor
    mask: Tensor | None
    generator: torch.Generator


class SolverSpaceEstimator(Estimator, ABC):
    """Estimates ``J^T v`` of a black-box step (``J = d step / d state``).

    :meth:`prepare` runs in the forward pass (it may issue probes, which need
    no cotangent); :meth:`vjp` runs in the backward pass with the cotangent
    ``v`` and whatever :meth:`prepare` returned.
    """

    space: ClassVar[str] = "solver"
    blocks_gradient: ClassVar[bool] = False
    """True when ``J^T v`` is identically 0: the step then carries no graph at all."""

    def relative_step(self) -> float | None:
        """The relative finite-difference step ``mu``, or None if it takes no differences."""
        return None

    def for_network(self, network: nn.Module) -> SolverSpaceEstimator:
        """This estimator adapted to the correction ``network`` it trains (default: itself).

        Lets an option default to what the user already declared for the
        network, e.g. the emulator's padding follows the network's.
        """
        return self

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Forget cached fits (kept across steps by some estimators); counters stay."""

    def prepare(self, ctx: ProbeContext) -> Any:
        """Forward-time work (probes, fits); the result goes to :meth:`vjp`."""
        return None

    @abstractmethod
    def vjp(self, ctx: ProbeContext, data: Any, v: Tensor) -> Tensor:
        """``J^T v`` ``(B, C, *spatial)`` for the cotangent ``v`` (same shape)."""


class WeightSpaceEstimator(Estimator, ABC):
    """Estimates the loss gradient in the weights from batched loss queries."""

    space: ClassVar[str] = "weight"

    @abstractmethod
    def estimate(self, model: nn.Module, batched_loss: Any, *, generator: torch.Generator) -> Tensor:
        """Write ``.grad`` on every trainable parameter; return the 0-dim loss at θ."""
