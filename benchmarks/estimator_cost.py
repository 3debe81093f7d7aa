"""What the default ZO-SOL estimator costs, scene by scene, and how good its gradient is: one run, interleaved.

Usage:
    python benchmarks/estimator_cost.py [--scenes ks ks2d_24 ks2d_48 quick gray_scott brusselator]
        [--estimators stop-gradient emulator:shrink=false] [--repeats 5] [--train 60] [--latency-ms 0]

For each scene (a preset: its dataset, network, batch and unroll; the
curriculum off, at the preset's final unroll) the dataset is generated into a
temporary folder (or read from ``data/<name>.h5`` when that file exists),
every method gets its own copy of the same initial network and optimizer, and
a training iteration is what the loop does (sample windows, gradient through
the loop's guarded query step, ``optimizer.step()``). Methods: the reference
(FO-SOL where the solver is differentiable, else stop-gradient), the default
estimator (whatever ``DEFAULT_ESTIMATOR`` names) and ``--estimators`` (a name, or
``name:key=value,...`` for one with options, e.g. ``emulator:shrink=false``).

Every method first trains ``--train`` untimed iterations (so a learned
estimator is past its warm-up, as it is for most of a real run), then the
methods take turns, one iteration each per round, for ``--repeats`` rounds;
each figure is the median over the rounds. Printed per method::

    <scene> <label> s/iter=<t> ratio=<t / t_reference> mean_ratio=<m> probes/sample-step=<p>

``mean_ratio`` is the ratio of the means over the rounds: work done only at
some iterations (a check and what follows it) counts in full there, where the
median may miss it. ``probes/sample-step`` (a mean over the rounds) counts the solver sample-steps beyond the forward
rollout's, per forward sample-step (0 for FO-SOL, stop-gradient, identity).
On differentiable scenes each ZO method's gradient is also compared with
FO-SOL's on the same windows at FO-SOL's trained weights (the estimator keeps
its own learned state): ``cosine`` and ``relative error`` (mean over
``--grad-batches`` batches). Each scene ends with the line::

    default cost <scene>: X.XXx <reference>

``--latency-ms L`` stands in for a simulator whose step costs ``L`` ms per
sample (a Fortran code, a closed binary): every solver call sleeps ``L``
times its batch size during the timed rounds (not the untimed ones). Only the
black-box methods run then, against stop-gradient (the forward rollout:
FO-SOL's backward through such a solver cannot be emulated by a sleep), and
the line reads ``default cost <scene> at L ms/sample-step: X.XXx stop-gradient``
(there the ratio of the means: the queries dominate, and a check falls in some
iterations only).
As ``L`` grows the ratio tends to ``1 + probes/sample-step``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from ks_estimator_cost import Method, iterate, make_method

from sciml_zoo.config_io import parse_override
from sciml_zoo.data.generate import generate_dataset
from sciml_zoo.data.loading import load_dataset, source_solver
from sciml_zoo.estimators import DEFAULT_ESTIMATOR, Estimator, agreement, make_estimator
from sciml_zoo.experiment import load_experiment
from sciml_zoo.runs import build_model
from sciml_zoo.train.objective import WindowSampler

SCENES = ("ks", "ks2d_24", "ks2d_48", "quick", "gray_scott", "brusselator")


def _gradient(method: Method, sampler: WindowSampler, seed: int) -> torch.Tensor:
    windows = sampler.sample(method.cfg.batch_size, torch.Generator().manual_seed(seed))
    method.model.zero_grad(set_to_none=True)
    method.source(windows, torch.Generator().manual_seed(seed + 1))
    return torch.cat([p.grad.flatten() for p in method.model.parameters()])


def _estimator(label: str) -> Estimator:
    """``name`` or ``name:key=value,key=value`` (TOML values), e.g. ``emulator:shrink=false``."""
    name, _, opts = label.partition(":")
    pairs = [parse_override(o) for o in opts.split(",")] if opts else []
    return make_estimator(name, {".".join(keys): value for keys, value in pairs})


class _Latency:
    """Wraps a solver's ``step``: sleeps ``seconds`` per sample of each call while ``on`` (a costly simulator)."""

    def __init__(self, solver: Any, seconds: float) -> None:
        self.step, self.seconds, self.on = solver.step, seconds, False
        solver.step = self

    def __call__(self, state: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if self.on:
            time.sleep(self.seconds * state.shape[0])
        return self.step(state, params)


def run_scene(name: str, args: argparse.Namespace, tmp: Path) -> None:
    exp = load_experiment(name)
    base = next(c for c in exp.methods.values() if c.method in ("fo-sol", "zo-sol"))
    base = replace(base, method="fo-sol", estimator=None, curriculum=False)
    path = Path("data") / f"{exp.recipe.name}.h5"
    data = load_dataset(path if path.is_file() else generate_dataset(exp.recipe, tmp / f"{name}.h5", progress=False))
    solver = source_solver(data)
    differentiable = solver.capabilities.differentiable and not args.latency_ms
    reference = "fo-sol" if differentiable else "stop-gradient"
    labels = list(dict.fromkeys([reference, DEFAULT_ESTIMATOR, *args.estimators]))
    latency = _Latency(solver, args.latency_ms / 1000) if args.latency_ms else None
    configs = {
        label: base if label == "fo-sol" else replace(base, method="zo-sol", estimator=_estimator(label))
        for label in labels
    }
    sampler = WindowSampler(data.train.states, data.train.params, steps=base.unroll)
    template = build_model(exp.model, data, seed=base.seed)
    shared = solver if latency is not None else None  # else each its own, as before
    methods = [make_method(label, cfg, data, template, shared) for label, cfg in configs.items()]
    fo = next((m for m in methods if m.label == "fo-sol"), None)
    try:
        for method in methods:
            for _ in range(args.train):
                iterate(method, sampler)
            method.times.clear()
            method.steps.clear()
        if latency is not None:
            latency.on = True
        for _ in range(args.repeats):
            for method in methods:
                iterate(method, sampler)
        if latency is not None:
            latency.on = False
        agreements = {}
        if fo is not None:
            for method in methods:
                if method is fo:
                    continue
                method.model.load_state_dict(fo.model.state_dict())
                rows = [
                    agreement(_gradient(method, sampler, 1000 + b)[None], _gradient(fo, sampler, 1000 + b)[None])
                    for b in range(args.grad_batches)
                ]
                agreements[method.label] = (
                    statistics.mean(float(a.cosine) for a in rows),
                    statistics.mean(float(a.relative_error) for a in rows),
                )
    finally:
        for method in methods:
            if method.query_step is not None:
                method.query_step.close()

    forward = base.batch_size * base.unroll
    entries = data.train.states[0, 0].numel()
    print(
        f"{name}: state {tuple(data.train.states.shape[2:])} ({entries} entries), batch {base.batch_size}, "
        f"unroll {base.unroll}; {args.train} untimed iterations, median of {args.repeats} interleaved rounds"
    )
    ref_time, ref_mean = statistics.median(methods[0].times), statistics.mean(methods[0].times)
    for method in methods:
        seconds = statistics.median(method.times)
        probes = (statistics.mean(method.steps) - forward) / forward
        mean_ratio = statistics.mean(method.times) / ref_mean
        line = f"{name} {method.label} s/iter={seconds:.3f} ratio={seconds / ref_time:.2f} mean_ratio={mean_ratio:.2f}"
        line += f" probes/sample-step={probes:.2f}"
        if method.label in agreements:
            cos, rel = agreements[method.label]
            line += f" cosine={cos:.3f} relative_error={rel:.3f}"
        print(line, flush=True)
    default = next(m for m in methods if m.label == DEFAULT_ESTIMATOR)
    if args.latency_ms:  # queries dominate and some iterations hold a check: the ratio of the means
        ratio, at = statistics.mean(default.times) / ref_mean, f" at {args.latency_ms:g} ms/sample-step"
    else:
        ratio, at = statistics.median(default.times) / ref_time, ""
    print(f"default cost {name}{at}: {ratio:.2f}x {reference}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", nargs="*", default=list(SCENES), help=f"presets [{' '.join(SCENES)}]")
    parser.add_argument("--estimators", nargs="*", default=["stop-gradient"], help="more ZO estimators to time")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds, round-robin over methods [5]")
    parser.add_argument("--train", type=int, default=60, help="untimed training iterations per method first [60]")
    parser.add_argument("--grad-batches", type=int, default=4, help="batches for the gradient agreement [4]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sleep per solver sample-step, timed rounds [0]")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="estimator-cost-") as tmp:
        for name in args.scenes:
            run_scene(name, args, Path(tmp))


if __name__ == "__main__":
    main()
