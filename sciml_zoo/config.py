"""The frozen config dataclasses of a run (model, training, run), validated in ``__post_init__``.

They live here, not under ``train/``, so that everything that reads or records
a config (runs, experiments, compare, diagnostics) imports them without
importing the training package: imports only run down the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from sciml_zoo.config_io import check_call_options
from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import DEFAULT_ESTIMATOR, ESTIMATORS, Estimator, as_estimator
from sciml_zoo.faults import EXECUTORS
from sciml_zoo.methods import METHODS, Method, get_method
from sciml_zoo.nn import ACTIVATIONS, ARCHS, PADDING_MODES

__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "METHODS", "EXECUTORS", "curriculum_stages"]


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
        for key, low in (("width", 1), ("kernel_size", 1), ("blocks", 1), ("depth", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"model.{key} must be an integer >= {low}, got {value!r}; e.g. model.{key}=3")
        if not isinstance(self.zero_mean, bool):
            raise ConfigError(f"model.zero_mean must be true or false, got {self.zero_mean!r}")
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
        workers: worker processes of the ``executor``: the pool size of
            ``process`` (>= 1; a batched adapter's batch is split evenly over
            them, an unbatched one's sent a member per task), the LocalCluster
            size of ``dask`` (0: Dask's default). With ``local``, ``workers >
            0`` sends an unbatched adapter's queries to a process pool of that
            size; a batched adapter stays in this process. FO-SOL always
            queries in this process (autograd through the solver).
        grad_clip: clip the gradient's global L2 norm to this value
            (``torch.nn.utils.clip_grad_norm_``); ``None``: no clipping.
        curriculum: grow the unroll length 1 -> 2 -> 4 -> ... -> ``unroll`` in
            equal shares of the iterations (Solver-in-the-Loop's advice for
            long unrolls); NON ignores it. On by default: on Gray–Scott it
            cut ZO-SOL's test MAE from 0.0304 to 0.0144 (3 seeds) at 39% of
            the solver queries (README); the presets measured before it
            became the default pin it off.
        timeout_s: seconds one solver query may take before it counts as
            failed (``None``: no limit).
        retries: times a failed query is retried before its batch member is
            dropped from the iteration's loss.
        max_consecutive_failures: stop after this many consecutive iterations
            with failed queries (members dropped or the iteration skipped).
        max_dropped_share: stop when a training simulation, once drawn 10
            times, was dropped (its queries failed after the retries) in more
            than this share of its draws; the message names it and its
            parameters (1.0: never stop for that).
        executor: where black-box queries run: ``local`` (this process),
            ``process`` (a local process pool of ``workers``) or ``dask``
            (``dask.distributed``: a LocalCluster of ``workers``, or the
            scheduler at ``scheduler_address``).
        scheduler_address: address of a running Dask scheduler
            (``tcp://host:8786``); only with ``executor = "dask"``.
        device: torch device of the network and the data (``cpu``, ``cuda``,
            ``cuda:1``); solvers stay on the CPU unless they declare support.
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
    grad_clip: float | None = None
    curriculum: bool = True
    timeout_s: float | None = None
    retries: int = 2
    max_consecutive_failures: int = 3
    max_dropped_share: float = 0.1
    executor: str = "local"
    scheduler_address: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        self._check_run_fields()
        if get_method(self.method).uses_estimator:
            spec = DEFAULT_ESTIMATOR if self.estimator is None else self.estimator
            try:
                estimator = as_estimator(spec, self.estimator_options)
            except ConfigError as exc:
                raise ConfigError(f"train.estimator: {exc} (registered: {', '.join(ESTIMATORS)})") from None
            object.__setattr__(self, "estimator", estimator)
            object.__setattr__(self, "estimator_options", {})
        elif self.estimator is not None or self.estimator_options:
            raise ConfigError(f"train.estimator is only used with method zo-sol, not {self.method!r}")
        if not hasattr(torch.optim, self.optimizer) or self.optimizer.startswith("_"):
            raise ConfigError(f"train.optimizer {self.optimizer!r} is not a torch.optim class (e.g. Adam, SGD)")
        if self.scheduler is not None and not hasattr(torch.optim.lr_scheduler, self.scheduler):
            raise ConfigError(
                f"train.scheduler {self.scheduler!r} is not in torch.optim.lr_scheduler (e.g. CosineAnnealingLR)"
            )
        given = {"params": "remove it", "lr": "set train.lr (--lr) instead"}  # what the loop passes
        check_call_options(
            "train.optimizer_options", getattr(torch.optim, self.optimizer), self.optimizer_options, given=given
        )
        if self.scheduler is not None:
            scheduler = getattr(torch.optim.lr_scheduler, self.scheduler)
            check_call_options(
                "train.scheduler_options", scheduler, self.scheduler_options, given={"optimizer": "remove it"}
            )
        elif self.scheduler_options:
            raise ConfigError("train.scheduler_options are set but train.scheduler is not; name a scheduler")

    def check_trajectory_length(self, frames: int, *, dataset: str = "the dataset", fix: str = "--unroll ") -> None:
        """Refuse an unroll that trajectories of ``frames`` frames cannot hold, before training starts.

        A window of ``n`` unrolled steps needs ``n + 1`` frames. With the
        curriculum the last stage is ``unroll`` itself, so the configured
        ``unroll`` is checked even if few iterations never reach it.

        Raises:
            ConfigError: one line naming the unroll, the frames and the fix.
        """
        if self.steps > frames - 1:
            stage = " (the curriculum's last stage)" if self.curriculum and self.method_spec.unrolls else ""
            raise ConfigError(
                f"train.unroll {self.unroll}{stage} needs trajectories of at least {self.steps + 1} frames, but "
                f"{dataset} has {frames} per simulation; use {fix}{frames - 1} or fewer, or a recipe with "
                f"num_frames >= {self.steps + 1}"
            )

    def _check_run_fields(self) -> None:
        """Types and ranges of the loop's fields, each error naming the key and the fix."""
        for key, low in (
            ("unroll", 1),
            ("iterations", 1),
            ("batch_size", 1),
            ("checkpoint_every", 1),
            ("workers", 0),
            ("retries", 0),
            ("max_consecutive_failures", 1),
        ):
            _check_int(key, getattr(self, key), low)
        _check_int("seed", self.seed, None)
        _check_number("lr", self.lr, positive=True, optional=False)
        _check_number("grad_clip", self.grad_clip, positive=True, optional=True)
        _check_number("timeout_s", self.timeout_s, positive=True, optional=True)
        _check_number("max_dropped_share", self.max_dropped_share, positive=False, optional=False)
        if not 0 <= self.max_dropped_share <= 1:
            raise ConfigError(f"train.max_dropped_share must be a share in [0, 1], got {self.max_dropped_share}")
        for key in ("optimizer_options", "scheduler_options", "estimator_options"):
            value = getattr(self, key, {})  # estimator_options may move into the estimator object
            if not isinstance(value, dict):
                raise ConfigError(f"train.{key} must be a table (e.g. {{ key = 1 }}), got {value!r}")
        if not isinstance(self.curriculum, bool):
            raise ConfigError(f"train.curriculum must be true or false, got {self.curriculum!r}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"train.executor must be one of {', '.join(EXECUTORS)}; got {self.executor!r}")
        if self.scheduler_address is not None and self.executor != "dask":
            raise ConfigError(f'train.scheduler_address ({self.scheduler_address!r}) needs train.executor = "dask"')
        if self.executor == "process" and self.workers < 1:
            raise ConfigError('train.executor = "process" needs train.workers >= 1')
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"train.device must be a device name like 'cpu' or 'cuda', got {self.device!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"train.device {self.device!r} is not a torch device ({exc}); use cpu or cuda") from None

    def unroll_at(self, iteration: int) -> int:
        """Unrolled steps at 0-based ``iteration``: :attr:`steps`, or the curriculum's stage.

        The curriculum has stages 1, 2, 4, ... up to ``unroll`` (the last stage is
        ``unroll`` itself), each an equal share of the iterations.
        """
        if not self.curriculum or not self.method_spec.unrolls:
            return self.steps
        stages = curriculum_stages(self.unroll)
        share = max(1, -(-self.iterations // len(stages)))  # ceil
        return stages[min(iteration // share, len(stages) - 1)]

    @property
    def steps(self) -> int:
        """Unrolled steps per training window (1 for NON)."""
        return self.method_spec.steps(self.unroll)

    @property
    def method_spec(self) -> Method:
        """The training method as an object (:mod:`sciml_zoo.methods`): what it needs, how it unrolls."""
        return get_method(self.method)

    @property
    def label(self) -> str:
        """Short name for tables: ``NON``, ``FO-SOL``, ``ZO-SOL[stencil]``, ``ZO-SOL[banded radius=1]``."""
        if isinstance(self.estimator, Estimator):
            return f"ZO-SOL[{self.estimator.short_name()}]"
        return self.method_spec.label


def curriculum_stages(unroll: int) -> list[int]:
    """Unroll lengths of the curriculum: powers of two below ``unroll``, then ``unroll``."""
    stages = [1]
    while stages[-1] * 2 < unroll:
        stages.append(stages[-1] * 2)
    if stages[-1] != unroll:
        stages.append(unroll)
    return stages


def _check_int(key: str, value: Any, low: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"train.{key} must be an integer, got {value!r}; e.g. train.{key}={max(low or 0, 1)}")
    if low is not None and value < low:
        raise ConfigError(f"train.{key} must be >= {low}, got {value}")


def _check_number(key: str, value: Any, *, positive: bool, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"train.{key} must be a number, got {value!r}; e.g. train.{key}=1e-3")
    if positive and not value > 0:
        raise ConfigError(f"train.{key} must be > 0, got {value}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run: dataset file, model, training."""

    data: str
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
