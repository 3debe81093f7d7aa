"""Estimator diagnostics: help a user pick an estimator for their own solver.

At one network state and one batch of windows, every estimator's gradient of
the SOL loss is computed and reported with its solver sample-steps and
wall-clock, plus:

- **against the truth** (differentiable solvers only): cosine and relative
  error ``|g_hat - g| / |g|`` against the FO-SOL gradient by backpropagation;
- **fit residual** (solver-space estimators, any solver, black boxes
  included): on held-out random probes ``u`` and ``w`` at the batch's first
  solver input, ``sqrt(sum (w^T J u - (J_hat^T w)^T u)^2 / sum (w^T J u)^2)``
  with ``J u`` measured by central differences; for Gaussian ``u, w`` this
  estimates ``|J - J_hat|_F / |J|_F`` (0: exact, 1: no better than zero);
- **agreement**: the pairwise cosine between the estimators' weight
  gradients (on a black box, estimators that agree with a low-residual one
  are trustworthy).

Every solver call goes through the fault policy (:mod:`sciml_zoo.faults`):
failed queries are retried; one that still fails stops the diagnosis with one
line.

Estimators are registry names (:data:`sciml_zoo.estimators.ESTIMATORS`), each
at most once; options use the config's keys, one ``NAME.KEY=VALUE`` per
option (values parsed like ``--set``), e.g. on the CLI::

    sciml-zoo diagnose --data d.h5 --estimators identity stencil banded \\
        --estimator-option stencil.kernel_size=3 --estimator-option banded.radius=1
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from sciml_zoo.config import ModelConfig, TrainConfig
from sciml_zoo.config_io import parse_override
from sciml_zoo.data.loading import load_dataset, source_solver
from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators import (
    Estimator,
    ProbeContext,
    SolverSpaceEstimator,
    agreement,
    make_estimator,
)
from sciml_zoo.estimators.probes import finite_difference_jvp, random_directions
from sciml_zoo.faults import FaultPolicy, make_query_step
from sciml_zoo.nn import CorrectionNet
from sciml_zoo.runs import build_model, load_model
from sciml_zoo.solver import Solver, StepCounter, StepFn
from sciml_zoo.train.gradients import make_gradient
from sciml_zoo.train.objective import Windows, WindowSampler

__all__ = [
    "DEFAULT_ESTIMATORS",
    "EstimatorReport",
    "build_estimators",
    "compare_gradients",
    "fit_residual",
    "format_diagnostics",
    "parse_estimator_options",
    "run_diagnostics",
]

DEFAULT_ESTIMATORS = ("stop-gradient", "identity", "state-rge", "stencil", "banded", "auto", "weight-rge")


@dataclass(frozen=True)
class EstimatorReport:
    """One estimator at a fixed network state and batch (None where not applicable)."""

    label: str
    cosine: float | None
    relative_error: float | None
    fit_residual: float | None
    solver_steps: int
    wall_s: float
    gradient: torch.Tensor = field(repr=False)
    stats: dict[str, Any] = field(default_factory=dict)


def parse_estimator_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["stencil.kernel_size=3", ...]`` -> ``{"stencil": {"kernel_size": 3}}``."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        keys, value = parse_override(item)
        if len(keys) != 2:
            raise ConfigError(f"estimator option {item!r}: use NAME.KEY=VALUE, e.g. stencil.kernel_size=3")
        options.setdefault(keys[0], {})[keys[1]] = value
    return options


def build_estimators(names: Sequence[str], options: dict[str, dict[str, Any]] | None = None) -> list[Estimator]:
    """Validated estimators for ``names`` with per-name ``options`` (before any query)."""
    options = options or {}
    if unused := sorted(set(options) - set(names)):
        raise ConfigError(f"options given for {unused}, which are not among the estimators {list(names)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"estimators {list(names)} repeat a name; give each at most once")
    return [make_estimator(name, options.get(name, {})) for name in names]


def _label(est: Estimator) -> str:
    default = type(est)()
    changed = [f"{k}={v}" for k, v in est.to_dict().items() if k != "name" and v != default.to_dict()[k]]
    return est.name + (f"({', '.join(changed)})" if changed else "")


def fit_residual(
    estimator: SolverSpaceEstimator,
    step: StepFn,
    state: torch.Tensor,
    params: torch.Tensor,
    *,
    mask: torch.Tensor | None,
    generator: torch.Generator,
    num_probes: int = 8,
    mu: float = 1e-2,
) -> float:
    """Held-out relative residual of ``estimator``'s ``J^T`` (see the module docstring)."""
    estimator = estimator.fresh()  # type: ignore[assignment]
    with torch.no_grad():
        output = step(state, params)
        ctx = ProbeContext(step, state, params, output, mask, generator)
        data = estimator.prepare(ctx)
        u = random_directions(num_probes, state, mask=mask, generator=generator)
        w = random_directions(num_probes, state, mask=mask, generator=generator)
        ju = finite_difference_jvp(step, state, params, u, mu=mu)
        measured = (w * ju).flatten(2).sum(-1)  # (B, Q)
        model = torch.stack(
            [(estimator.vjp(ctx, data, w[:, i]) * u[:, i]).flatten(1).sum(-1) for i in range(num_probes)], 1
        )
    return float(agreement(model.reshape(1, -1), measured.reshape(1, -1)).relative_error[0])


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()])


def compare_gradients(
    model: CorrectionNet,
    solver: Solver,
    windows: Windows,
    estimators: Sequence[Estimator],
    *,
    unroll: int,
    seed: int = 0,
) -> tuple[list[EstimatorReport], int | None]:
    """Every estimator's SOL gradient at one state and batch, with fit residuals and truth if available.

    Returns the reports and the solver sample-steps of the exact gradient
    (None for a non-differentiable solver).
    """
    truth, fo_steps = None, None
    if solver.capabilities.differentiable:
        counter = StepCounter()
        model.zero_grad(set_to_none=True)
        make_gradient(TrainConfig(method="fo-sol", unroll=unroll), model, solver, counter)(
            windows, torch.Generator().manual_seed(seed)
        )
        truth, fo_steps = _flat_grad(model), counter.sample_steps
    rows = []
    mask = cast(torch.Tensor, model.mask).bool()
    for est in estimators:
        cfg = TrainConfig(method="zo-sol", unroll=unroll, estimator=est)
        counter = StepCounter()
        gradient = make_gradient(cfg, model, solver, counter)
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        gradient(windows, torch.Generator().manual_seed(seed))
        wall = time.perf_counter() - t0
        grad = _flat_grad(model)
        cos = rel = None
        if truth is not None:
            a = agreement(grad[None], truth[None])
            cos, rel = float(a.cosine[0]), float(a.relative_error[0])
        residual = None
        if isinstance(est, SolverSpaceEstimator) and not est.blocks_gradient:
            residual = fit_residual(
                est,
                make_query_step(solver, policy=FaultPolicy()),
                windows.initial,
                windows.params,
                mask=mask,
                generator=torch.Generator().manual_seed(seed + 1),
            )
        stats = gradient.stats()
        rows.append(EstimatorReport(_label(est), cos, rel, residual, counter.sample_steps, wall, grad, stats))
    model.zero_grad(set_to_none=True)
    return rows, fo_steps


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_diagnostics(runs: list[list[EstimatorReport]], fo_steps: int | None) -> str:
    """Markdown tables (means over repeated batches): per estimator, then pairwise cosine."""

    def mean(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return sum(got) / len(got) if got else None

    labels = [r.label for r in runs[0]]
    lines = [
        f"| estimator | cosine vs FO | rel. error | fit residual | solver steps | wall (s) |  (mean of {len(runs)})",
        "|---|---|---|---|---|---|",
    ]
    if fo_steps is not None:
        lines.append(f"| FO-SOL (backprop) | 1.000 | 0.000 | 0.000 | {fo_steps} | - |")
    for i, label in enumerate(labels):
        rs = [run[i] for run in runs]
        cos, rel = mean([r.cosine for r in rs]), mean([r.relative_error for r in rs])
        res = mean([r.fit_residual for r in rs])
        steps, wall = mean([r.solver_steps for r in rs]) or 0.0, mean([r.wall_s for r in rs]) or 0.0
        lines.append(f"| {label} | {_fmt(cos)} | {_fmt(rel)} | {_fmt(res)} | {steps:.0f} | {wall:.2f} |")
    lines += ["", "Pairwise cosine between the estimators' weight gradients:", ""]
    lines += ["| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for i, a in enumerate(labels):
        cells = []
        for j in range(len(labels)):
            pairs = [agreement(run[i].gradient[None], run[j].gradient[None]).cosine[0] for run in runs]
            cells.append(f"{float(sum(pairs)) / len(pairs):.2f}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_diagnostics(
    data: str | Path,
    *,
    run: str | None = None,
    estimators: Sequence[str] | None = None,
    estimator_options: Sequence[str] = (),
    unroll: int = 4,
    batch_size: int = 3,
    seed: int = 0,
    repeats: int = 1,
) -> str:
    """CLI entry: validate the estimators, load data (and optionally trained weights), compare, format."""
    built = build_estimators(list(estimators or DEFAULT_ESTIMATORS), parse_estimator_options(estimator_options))
    dataset = load_dataset(data)
    solver = source_solver(dataset)
    model = load_model(run, dataset) if run else build_model(ModelConfig(), dataset, seed=seed)
    frames = dataset.train.states.shape[1]
    if unroll > frames - 1:
        raise ConfigError(
            f"--unroll {unroll} needs trajectories of at least {unroll + 1} frames, but dataset {str(data)!r} has "
            f"{frames} per simulation; use --unroll {frames - 1} or fewer"
        )
    sampler = WindowSampler(dataset.train.states, dataset.train.params, steps=unroll)
    runs, fo_steps = [], None
    for r in range(repeats):
        windows = sampler.sample(batch_size, torch.Generator().manual_seed(seed + 1000 * r))
        rows, fo_steps = compare_gradients(model, solver, windows, built, unroll=unroll, seed=seed + r)
        runs.append(rows)
    return format_diagnostics(runs, fo_steps)
