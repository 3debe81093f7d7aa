"""Frozen training configuration, validated in ``__post_init__``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import DEFAULT_ESTIMATOR, ESTIMATORS, Estimator, as_estimator
from sciml_zoo.nn import ACTIVATIONS, ARCHS, PADDING_MODES

__all__ = ["ModelConfig", "TrainConfig", "METHODS"]

METHODS = ("non", "fo-sol", "zo-sol")


@dataclass(frozen=True)
class ModelConfig:
    """Correction network: ``arch`` is ``"cnn"`` (55k) or ``"resnet"`` (260k).

    ``padding`` is the convolutions' padding mode (``"circular"`` for periodic
    domains); ``zero_mean`` makes corrections conserve each channel's total.
    ``depth`` is the number of convolutions of the cnn (4: the book's CNN);
    ``activation`` is ``"leaky_relu"`` (the paper's) or ``"gelu"``. Conv1d,
    Conv2d or Conv3d follows from the dataset's state.
    """

    arch: str = "cnn"
    width: int = 32
    kernel_size: int = 5
    blocks: int = 5
    padding: str = "zeros"
    zero_mean: bool = False
    depth: int = 4
    activation: str = "leaky_relu"

    def __post_init__(self) -> None:
        if self.padding not in PADDING_MODES:
            raise ConfigError(f"model.padding must be one of {', '.join(PADDING_MODES)}; got {self.padding!r}")
        if self.arch not in ARCHS:
            raise ConfigError(f"model.arch must be one of {', '.join(ARCHS)}; got {self.arch!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        if self.depth < 1:
            raise ConfigError(f"model.depth (convolutions of the cnn) must be >= 1, got {self.depth}")
        if self.kernel_size % 2 == 0 or self.width < 1:
            raise ConfigError("model.kernel_size must be odd and model.width positive")


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        method: ``non`` (one step from reference states), ``fo-sol`` (unroll
            through the differentiable solver) or ``zo-sol`` (unroll through
            the black-box solver with a zeroth-order ``estimator``).
        unroll: SOL steps n (NON always uses 1).
        iterations: optimizer steps.
        batch_size: trajectory windows per iteration (the paper uses 3).
        optimizer: any ``torch.optim`` class name; ``lr`` and
            ``optimizer_options`` are passed to it.
        scheduler: optional ``torch.optim.lr_scheduler`` class name with
            ``scheduler_options``.
        estimator: zeroth-order estimator for ``zo-sol``: an estimator object
            (e.g. ``Banded(radius=2)``), a registry name (see
            :data:`sciml_zoo.estimators.ESTIMATORS`; solver-space
            ``auto | jacobian | banded | stencil | identity | stop-gradient |
            state-rge | identity-rge``, weight-space ``weight-rge |
            weight-cge | sparse-cge``) or a ``{"name": ..., **options}``
            table; None means ``"auto"``. ``__post_init__`` builds and
            validates the object and stores it here, so a bad option fails
            when the config is read.
        estimator_options: options for a named estimator; folded into the
            object (and emptied) by ``__post_init__``.
        checkpoint_every: iterations between checkpoints (also on interrupt).
        seed: fixes initialisation, batch sampling and ZO directions.
        workers: process-pool workers that run the solver queries of a
            non-batched adapter in parallel (0: in this process). Ignored for
            batched adapters, whose queries already go out as one call.
    """

    method: str = "fo-sol"
    unroll: int = 4
    iterations: int = 1000
    batch_size: int = 3
    optimizer: str = "Adam"
    lr: float = 1e-4
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    scheduler: str | None = None
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    estimator: Estimator | str | Mapping[str, Any] | None = None
    estimator_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 100
    seed: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"train.method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.method == "zo-sol":
            spec = DEFAULT_ESTIMATOR if self.estimator is None else self.estimator
            try:
                estimator = as_estimator(spec, self.estimator_options)
            except ConfigError as exc:
                raise ConfigError(f"train.estimator: {exc} (registered: {', '.join(ESTIMATORS)})") from None
            object.__setattr__(self, "estimator", estimator)
            object.__setattr__(self, "estimator_options", {})
        elif self.estimator is not None or self.estimator_options:
            raise ConfigError(f"train.estimator is only used with method zo-sol, not {self.method!r}")
        if self.workers < 0:
            raise ConfigError(f"train.workers must be >= 0, got {self.workers}")
        if self.unroll < 1 or self.iterations < 0 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError("unroll, batch_size and checkpoint_every must be >= 1; iterations >= 0")
        if not hasattr(torch.optim, self.optimizer) or self.optimizer.startswith("_"):
            raise ConfigError(f"train.optimizer {self.optimizer!r} is not a torch.optim class (e.g. Adam, SGD)")
        if self.scheduler is not None and not hasattr(torch.optim.lr_scheduler, self.scheduler):
            raise ConfigError(
                f"train.scheduler {self.scheduler!r} is not in torch.optim.lr_scheduler (e.g. CosineAnnealingLR)"
            )

    @property
    def steps(self) -> int:
        """Unrolled steps per training window (1 for NON)."""
        return 1 if self.method == "non" else self.unroll

    @property
    def label(self) -> str:
        """Short name for tables: ``NON``, ``FO-SOL``, ``ZO-SOL[stencil]``."""
        if isinstance(self.estimator, Estimator):
            return f"ZO-SOL[{self.estimator.name}]"
        return self.method.upper()
