"""The default estimator's iteration, its emulator padding by index against ``F.pad``: one run, interleaved.

Usage:
    python benchmarks/emulator_padding.py [--scenes ks ks2d_24 ks2d_48 gray_scott brusselator] [--repeats 15]

For each scene (a preset with circular padding: its dataset, network, batch
and unroll, the curriculum off; the dataset read from ``data/<name>.h5`` or
generated into a temporary folder) the default ZO-SOL method trains ``--train``
untimed iterations, then ``2 * --repeats`` timed ones whose emulator pads by
index and with the convolutions' own ``F.pad(mode="circular")``
(``StepEmulator.wrap = False``, the code before the index padding) in turn:
one estimator, so its modes, checks and fits are the same for both. Printed
per scene (medians over each padding's iterations)::

    <scene> index s/iter=<t> F.pad s/iter=<t> ratio=<index / F.pad>
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from ks_estimator_cost import iterate, make_method

from sciml_zoo.data.generate import generate_dataset
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.estimators import DEFAULT_ESTIMATOR, make_estimator
from sciml_zoo.experiment import load_experiment
from sciml_zoo.runs import build_model
from sciml_zoo.train.objective import WindowSampler


def run_scene(name: str, args: argparse.Namespace, tmp: Path) -> None:
    exp = load_experiment(name)
    base = next(c for c in exp.methods.values() if c.method in ("fo-sol", "zo-sol"))
    cfg = replace(base, method="zo-sol", estimator=make_estimator(DEFAULT_ESTIMATOR), curriculum=False)
    path = Path("data") / f"{exp.recipe.name}.h5"
    data = load_dataset(path if path.is_file() else generate_dataset(exp.recipe, tmp / f"{name}.h5", progress=False))
    sampler = WindowSampler(data.train.states, data.train.params, steps=cfg.unroll)
    method = make_method("default", cfg, data, build_model(exp.model, data, seed=cfg.seed))
    for _ in range(args.train):
        iterate(method, sampler)
    net = method.source.zo.estimator._net  # type: ignore[union-attr]
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(2 * args.repeats):
        net.wrap = i % 2 == 0  # alternate: the same estimator, its modes and fits, either padding
        iterate(method, sampler)
        times[net.wrap].append(method.times[-1])
    index, fpad = statistics.median(times[True]), statistics.median(times[False])
    print(f"{name} index s/iter={index:.4f} F.pad s/iter={fpad:.4f} ratio={index / fpad:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", nargs="*", default=["ks", "ks2d_24", "ks2d_48", "gray_scott", "brusselator"])
    ap.add_argument("--train", type=int, default=40, help="untimed iterations per copy first [40]")
    ap.add_argument("--repeats", type=int, default=15, help="timed iterations per padding [15]")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.scenes:
            run_scene(name, args, Path(tmp))


if __name__ == "__main__":
    main()
