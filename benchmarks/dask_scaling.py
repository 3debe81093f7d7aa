"""Throughput of the Dask executor with k = 1, 2, 4, 8 workers on a LocalCluster.

The solver is the toy one behind a fixed 0.2 s sleep per query and almost no
CPU, like an external code that waits on its own cluster; it answers one query
per call (unbatched), so every query is a Dask task. One round is the ZO-SOL
queries of one training iteration: the probe rows of a solver-space
estimator for a batch of 4 windows (4 x 8 = 32 independent queries), sent
through the fault-guarded step (:func:`sciml_zoo.faults.make_query_step`).
Worker start-up and the first solver build are excluded (a warm-up round);
the throughput of a k is that of its median round (the machine this was
written on is shared, so single rounds are noisy; every round time is printed
to stderr).

Prints ``k=<k> queries/s=<q> efficiency=<q_k / (k q_1)>`` per k and, last,
``efficiency at k=8: <value>`` (target >= 0.8).

    python benchmarks/dask_scaling.py [--queries 32] [--rounds 2] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from sciml_zoo.executors import DaskSolverExecutor
from sciml_zoo.executors.flaky import make_flaky_solver
from sciml_zoo.faults import FaultCounts, FaultPolicy, make_query_step
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

RESOLUTION = (16, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=32, help="independent queries per round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per k")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per query (sleep)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()

    toy = ToyDiffusion(resolution=RESOLUTION)
    params = torch.linspace(0.002, 0.01, args.queries)[:, None]
    states = toy.initial_state(params, seed=0)
    expected = toy.step(states, params)
    spec = {"inner": "toy-diffusion", "inner_options": {"resolution": RESOLUTION}, "delay_s": args.delay}
    local = make_flaky_solver(**spec)  # the driver's copy: name and capabilities (unbatched)
    rates: dict[int, float] = {}
    for k in args.workers:
        with DaskSolverExecutor(make_flaky_solver, spec, n_workers=k, threads_per_worker=1) as executor:
            counts = FaultCounts()
            step = make_query_step(local, executor=executor, policy=FaultPolicy(timeout_s=30.0), counts=counts)
            executor.warm_up()  # every worker imports torch now
            step(states, params)  # warm-up round: worker threads build their solver
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                out = step(states, params)
                times.append(time.perf_counter() - t0)
            print(f"  k={k} round times (s): {' '.join(f'{t:.3f}' for t in times)}", file=sys.stderr)
            elapsed = statistics.median(times)
            if not torch.equal(out, expected) or counts.failures:
                raise SystemExit(f"k={k}: wrong results or failures ({counts.as_dict()})")
        rates[k] = args.queries / elapsed
        first = rates[args.workers[0]] / args.workers[0]
        print(f"k={k} queries/s={rates[k]:.3f} efficiency={rates[k] / (k * first):.3f}", flush=True)
    last = args.workers[-1]
    print(f"efficiency at k={last}: {rates[last] / (last * rates[args.workers[0]] / args.workers[0]):.3f}")


if __name__ == "__main__":
    main()
