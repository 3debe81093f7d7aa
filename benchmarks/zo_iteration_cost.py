"""Time per training iteration: FO-SOL vs every ZO estimator, same batch, one run.

Usage:
    python benchmarks/zo_iteration_cost.py --data results/quick/data/wake_quick.h5 \
        [--estimators identity stencil banded auto ...] \
        [--estimator-option banded.radius=1 ...] [--repeats 5]

For each method the gradient of the same SOL loss (same weights, same windows)
is computed ``--repeats`` times after one warm-up call (jit tracing); the median
wall-clock, the solver sample-steps per iteration and the ratios to FO-SOL are
printed. Weight-space estimators are also timed with feature reuse switched off
(``reuse=False``) to show what reusing the first solver call and the early
layers saves.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sciml_zoo.config import ModelConfig, TrainConfig
from sciml_zoo.data.loading import load_dataset, source_solver
from sciml_zoo.diagnostics import build_estimators, parse_estimator_options
from sciml_zoo.estimators import WeightSpaceEstimator
from sciml_zoo.runs import build_model
from sciml_zoo.solver import StepCounter, black_box, counting
from sciml_zoo.train.gradients import WeightSpaceGradient, make_gradient
from sciml_zoo.train.objective import WindowSampler

DEFAULT = [
    "stop-gradient",
    "identity",
    "identity-rge",
    "stencil",
    "jacobian",
    "banded",
    "auto",
    "weight-rge",
    "sparse-cge",
]
DEFAULT_OPTIONS = ["identity-rge.num_directions=4", "sparse-cge.sparsity=0.99", "sparse-cge.grasp_directions=16"]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: jit traces for new batch sizes
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="results/quick/data/wake_quick.h5")
    p.add_argument("--estimators", nargs="*", default=DEFAULT)
    p.add_argument("--estimator-option", action="append", metavar="NAME.KEY=VALUE", default=None)
    p.add_argument("--unroll", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    items = DEFAULT_OPTIONS if args.estimator_option is None else args.estimator_option
    options = {k: v for k, v in parse_estimator_options(items).items() if k in args.estimators}
    estimators = build_estimators(args.estimators, options)  # validated before any query
    data = load_dataset(args.data)
    solver = source_solver(data)
    model = build_model(ModelConfig(), data, seed=0)
    windows = WindowSampler(data.train.states, data.train.params, steps=args.unroll).sample(
        args.batch_size, torch.Generator().manual_seed(0)
    )
    rows = []

    def measure(label: str, cfg: TrainConfig, reuse: bool = True) -> None:
        counter = StepCounter()
        grad = make_gradient(cfg, model, solver, counter)
        if isinstance(grad, WeightSpaceGradient) and not reuse:
            grad = WeightSpaceGradient(
                model,
                counting(black_box(solver), counter),
                steps=cfg.steps,
                estimator=grad.estimator,
                reuse=False,
            )
        gen = torch.Generator().manual_seed(0)

        def once() -> None:
            model.zero_grad(set_to_none=True)
            grad(windows, gen)

        once()  # one-time setup (e.g. ZO-GraSP ratios) is not part of an iteration
        before = counter.sample_steps
        seconds = _time(once, args.repeats)
        steps = (counter.sample_steps - before) / (args.repeats + 1)
        rows.append((label, seconds, steps))

    measure("FO-SOL", TrainConfig(method="fo-sol", unroll=args.unroll))
    for est in estimators:
        cfg = TrainConfig(method="zo-sol", unroll=args.unroll, estimator=est)
        measure(f"ZO-SOL[{est.name}]", cfg)
        if isinstance(est, WeightSpaceEstimator):
            measure(f"ZO-SOL[{est.name}] without feature reuse", cfg, reuse=False)
    fo_s, fo_steps = rows[0][1], rows[0][2]
    print(
        f"{data.recipe.name}: unroll {args.unroll}, batch {args.batch_size}, threads {args.threads}, "
        f"median of {args.repeats}"
    )
    print("| method | s / iteration | x FO-SOL time | solver steps / iteration | x FO-SOL steps |")
    print("|---|---|---|---|---|")
    for label, seconds, steps in rows:
        print(f"| {label} | {seconds:.3f} | {seconds / fo_s:.2f} | {steps:.0f} | {steps / fo_steps:.1f} |")


if __name__ == "__main__":
    main()
