"""Training wall-clock per iteration on KS: FO-SOL and every ZO-SOL estimator, one run, interleaved.

Usage:
    python benchmarks/ks_estimator_cost.py [--repeats 5] [--sparse-repeats N] [--only identity stencil ... weight-cge]

The scene, network and batch are the ``ks`` preset's (solvers/ks.py on 48
points; 1D CNN of depth 3, width 16, kernel 5, gelu, circular padding; batch
16, unroll 16, Adam). The ``ks`` dataset is generated into a temporary folder
(a few seconds). Each method gets its own copy of the same initial network and
its own optimizer, and a training iteration is what the loop does: sample a
batch of windows, compute the gradient (through the loop's guarded black-box
query step for ZO-SOL, through the differentiable solver for FO-SOL), clip
nothing, ``optimizer.step()``.

Every method first runs ``--warmup`` untimed iterations (one-time set-up such
as sparse CGE's ZO-GraSP ratios, ~400 queries, and first-call overheads).
Then the methods take turns, round-robin, one iteration each per round, for
``--repeats`` rounds, so slow drifts of a shared machine hit every method
alike; each line reports the median. ``sparse-cge`` (95 % sparsity: about
5 % of the ~1.5k weights estimated by forward differences, i.e. ~100 batched
loss evaluations of a 16-step unroll per iteration, ~1 s on one core) is the
slowest; ``--sparse-repeats N`` lets it (and its central-difference variant, twice
the queries) join only the first N rounds when a larger network makes it too
slow (its median is then over fewer iterations, as the header line says).
Dense ``weight-cge`` (one forward difference per weight, ~1.5k batched loss
evaluations per iteration) runs only when named in ``--only``. The default run
takes about a minute on one core.

Prints one line per method::

    <name> s/iter=<t> ratio_to_fo=<t / t_fo> solver_steps/iter=<n>

where solver_steps counts solver sample-steps (a batch of 16 states advanced
one step counts 16).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from sciml_zoo.config import TrainConfig
from sciml_zoo.data.generate import generate_dataset
from sciml_zoo.data.loading import Dataset, load_dataset, source_solver
from sciml_zoo.estimators import Jacobian, SparseCGE, make_estimator
from sciml_zoo.experiment import load_experiment
from sciml_zoo.runs import build_model
from sciml_zoo.solver import StepCounter
from sciml_zoo.train.objective import WindowSampler
from sciml_zoo.train.queries import FaultCounts, make_gradient_source, make_query_step

ESTIMATORS: dict[str, Any] = {
    "stop-gradient": "stop-gradient",
    "identity": "identity",
    "state-rge": "state-rge",
    "identity-rge": "identity-rge",
    "stencil": "stencil",
    "banded": "banded",
    "jacobian-central": Jacobian(difference="central"),
    "jacobian-forward": Jacobian(difference="forward"),
    "auto": "auto",
    "weight-rge": "weight-rge",
    "sparse-cge": SparseCGE(sparsity=0.95),
    "sparse-cge-central": SparseCGE(sparsity=0.95, difference="central"),
    "weight-cge": "weight-cge",
}
"""Label -> estimator (a registry name with its defaults, or an object)."""

OPT_IN = {"weight-cge"}
"""Labels run only when named in ``--only`` (dense CGE: one query per weight, ~20 s per iteration)."""

SPARSE = {"sparse-cge", "sparse-cge-central", "weight-cge"}
"""Labels that join only the first ``--sparse-repeats`` rounds."""


@dataclass
class Method:
    """One method's training state: its own network, optimizer, sampler stream and timings."""

    label: str
    cfg: TrainConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    source: Any
    query_step: Any
    counter: StepCounter
    window_gen: torch.Generator
    probe_gen: torch.Generator
    times: list[float]
    steps: list[int]


def make_method(label: str, cfg: TrainConfig, data: Dataset, template: torch.nn.Module, solver: Any = None) -> Method:
    """The objects the training loop would build for ``cfg`` (same initial weights for every method;
    ``solver``: the data's source solver, or one given, e.g. with a latency added)."""
    solver = source_solver(data) if solver is None else solver
    model = copy.deepcopy(template)
    optimizer = getattr(torch.optim, cfg.optimizer)(model.parameters(), lr=cfg.lr, **cfg.optimizer_options)
    counter = StepCounter()
    spec = (data.recipe.solver, data.recipe.solver_kwargs("source"))
    query_step = None if cfg.method == "fo-sol" else make_query_step(cfg, solver, spec, FaultCounts())
    source = make_gradient_source(cfg, model, solver, counter, query_step)  # type: ignore[arg-type]
    return Method(
        label=label,
        cfg=cfg,
        model=model,
        optimizer=optimizer,
        source=source,
        query_step=query_step,
        counter=counter,
        window_gen=torch.Generator().manual_seed(cfg.seed + 1),
        probe_gen=torch.Generator().manual_seed(cfg.seed + 2),
        times=[],
        steps=[],
    )


def iterate(method: Method, sampler: WindowSampler) -> None:
    """One training iteration, timed and its solver sample-steps counted."""
    before = method.counter.sample_steps
    t0 = time.perf_counter()
    windows = sampler.sample(method.cfg.batch_size, method.window_gen)
    method.optimizer.zero_grad(set_to_none=True)
    method.source(windows, method.probe_gen)
    method.optimizer.step()
    method.times.append(time.perf_counter() - t0)
    method.steps.append(method.counter.sample_steps - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (round-robin over methods) [5]")
    parser.add_argument("--sparse-repeats", type=int, default=None, help="of those, rounds sparse-cge joins [all]")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations per method first [1]")
    parser.add_argument("--only", nargs="*", default=None, metavar="LABEL", help=f"of {', '.join(ESTIMATORS)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=None, help="an existing ks dataset file (default: generate one)")
    args = parser.parse_args()
    sparse_repeats = args.repeats if args.sparse_repeats is None else min(args.sparse_repeats, args.repeats)
    torch.set_num_threads(args.threads)

    experiment = load_experiment("ks")
    base = experiment.methods["fo-sol"]
    labels = [label for label in ESTIMATORS if (label in args.only if args.only is not None else label not in OPT_IN)]
    configs = {"FO-SOL": base}
    for label in labels:
        estimator = ESTIMATORS[label]
        if isinstance(estimator, str):
            estimator = make_estimator(estimator)
        configs[label] = replace(base, method="zo-sol", estimator=estimator)  # validated before any query

    with tempfile.TemporaryDirectory(prefix="ks-estimator-cost-") as tmp:
        path = args.data or generate_dataset(experiment.recipe, Path(tmp) / "ks.h5", progress=False)
        data = load_dataset(path)
        sampler = WindowSampler(data.train.states, data.train.params, steps=base.unroll)
        template = build_model(experiment.model, data, seed=base.seed)
        methods = [make_method(label, cfg, data, template) for label, cfg in configs.items()]
        try:
            for method in methods:
                for _ in range(args.warmup):
                    iterate(method, sampler)
                method.times.clear()
                method.steps.clear()
            for round_ in range(args.repeats):
                for method in methods:
                    if method.label in SPARSE and round_ >= sparse_repeats:
                        continue
                    iterate(method, sampler)
        finally:
            for method in methods:
                if method.query_step is not None:
                    method.query_step.close()

    weights = sum(p.numel() for p in template.parameters())
    print(
        f"ks: {data.recipe.source_resolution} points, network {weights} weights, batch {base.batch_size}, "
        f"unroll {base.unroll}, threads {args.threads}; warm-up {args.warmup}, median of {args.repeats} "
        f"interleaved rounds (weight-space CGE: {sparse_repeats})"
    )
    fo_time = statistics.median(methods[0].times)
    for method in methods:
        seconds = statistics.median(method.times)
        steps = statistics.median(method.steps)
        print(f"{method.label} s/iter={seconds:.3f} ratio_to_fo={seconds / fo_time:.2f} solver_steps/iter={steps:.0f}")


if __name__ == "__main__":
    main()
