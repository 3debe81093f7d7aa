"""Per-sample cost of the wake-flow step: unbatched vs batched (8, 32), in one run.

Usage: python benchmarks/solver_batching.py [--resolution 32 64] [--repeats 20]
Prints median milliseconds per call and per sample, and the speed-up of batching
relative to the unbatched step measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sciml_zoo_solvers.phiflow_wake import make_wake_solver


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, nargs=2, default=(32, 64))
    p.add_argument("--batches", type=int, nargs="*", default=(1, 8, 32))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=40, help="steps past the start-up transient first")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    solver = make_wake_solver(resolution=tuple(args.resolution))
    biggest = max(args.batches)
    all_re = torch.linspace(100, 3000, biggest).view(biggest, 1)
    developed = solver.initial_state(all_re, seed=0)
    with torch.no_grad():
        for _ in range(args.warmup):  # the first steps need many CG iterations; time a developed flow
            developed = solver.step(developed, all_re)
    rows = []
    for b in args.batches:
        idx = torch.linspace(0, biggest - 1, b).long()
        re, state = all_re[idx], developed[idx]
        with torch.no_grad():
            state = solver.step(state, re)  # trace once per batch size
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                state = solver.step(state, re)
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append((b, med * 1e3, med * 1e3 / b))
    base = rows[0][2]
    print(f"wake-flow step at {args.resolution[0]}x{args.resolution[1]}, torch threads={torch.get_num_threads()}")
    print("| batch | ms / call | ms / sample | per-sample speed-up vs batch 1 |")
    print("|---|---|---|---|")
    for b, call, sample in rows:
        print(f"| {b} | {call:.1f} | {sample:.2f} | {base / sample:.1f}x |")


if __name__ == "__main__":
    main()
