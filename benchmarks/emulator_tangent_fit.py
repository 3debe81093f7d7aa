"""Can the online emulator's ``J_E^T v`` match a black-box step's ``J^T v``? Output fit against tangent fit, offline.

Usage:
    python benchmarks/emulator_tangent_fit.py [--preset gray_scott] [--fits 3000] [--weights 0 1] [--lr 1e-3]

The dataset of ``--preset`` is read from ``data/<name>.h5`` (or generated into
a temporary folder). The emulator the ``emulator`` estimator builds
(:class:`~sciml_zoo.nn.StepEmulator`, its defaults) is fitted for ``--fits``
Adam steps, each on the solver's next states of 4 random training states (the
pairs a rollout gives), as the estimator fits. Every 16 steps a "check" measures
``J r`` by central differences for 2 of those states and 4 Gaussian directions
each, as the estimator's check does; with ``--weights`` ``w > 0`` the fit adds
``w`` times the relative squared error of ``J_E r`` on the last check's probes
(``tangent_weight``); ``--lr`` is the emulator's Adam rate. Held out: two
test states, whose exact Jacobian is built column by column from central
differences (so keep the state small), and a white-noise cotangent each. Printed at a few fit counts::

    weight=<w> fits=<n> relative error of J_E^T v: <state 1> <state 2> (identity <..> <..>)

Solver queries of the checks and of the fit are counted; the held-out
Jacobians are not part of any method.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from sciml_zoo.data.cache import dataset_for
from sciml_zoo.data.loading import source_solver
from sciml_zoo.estimators.probes import finite_difference_jvp, random_directions
from sciml_zoo.experiment import load_experiment
from sciml_zoo.nn.emulator import StepEmulator


def _jacobian(step, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` Jacobian of ``step`` at one state ``x`` ``(1, C, *spatial)``: central differences along
    every unit vector, as the estimators' own probes take them."""
    n = x.numel()
    units = torch.eye(n, dtype=x.dtype).view(1, n, *x.shape[1:])
    columns = finite_difference_jvp(step, x, p, units, mu=1e-4, query_batch=512, centered=True)
    return columns.reshape(n, n).T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gray_scott")
    ap.add_argument("--fits", type=int, default=3000)
    ap.add_argument("--weights", type=float, nargs="*", default=[0.0, 1.0])
    ap.add_argument("--lr", type=float, default=1e-3, help="the emulator's Adam learning rate")
    args = ap.parse_args()
    torch.set_num_threads(1)
    exp = load_experiment(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        _, data = dataset_for(exp.recipe, Path(tmp), shared_dir="data", progress=False)
    solver = source_solver(data)

    def step(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return solver.step(x, p)

    states, params = data.train.states, data.train.params  # (S, T, C, *spatial), (S, P)
    xs = states[:, :-1].flatten(0, 1)
    ps = params.repeat_interleave(states.shape[1] - 1, 0)
    test = [(data.test.states[i, t : t + 1], data.test.params[i : i + 1]) for i, t in ((0, 30), (1, 45))]
    jacobians = [_jacobian(step, x, p) for x, p in test]
    gen = torch.Generator().manual_seed(1)
    cotangents = [torch.randn(x.shape, generator=gen) for x, _ in test]
    truth = [(j.T @ v.flatten()).view_as(v) for j, v in zip(jacobians, cotangents, strict=True)]
    identity = [float((v - t).norm() / t.norm()) for v, t in zip(cotangents, truth, strict=True)]
    shape = tuple(xs.shape[1:])
    print(f"# {args.preset}: state {shape}, {args.fits} fits of 4 pairs, a check every 16 fits, lr {args.lr:g}")
    for weight in args.weights:
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(0)
        net = StepEmulator(xs.shape[1], ps.shape[1], xs.dim() - 2, width=12, depth=3, kernel_size=5, padding="circular")
        first = torch.randint(len(xs), (16,), generator=g)
        net.calibrate(xs[first], ps[first], step(xs[first], ps[first]))
        opt = torch.optim.Adam(net.parameters(), lr=args.lr)
        probes, queries = None, 0
        for n in range(1, args.fits + 1):
            b = torch.randint(len(xs), (4,), generator=g)
            x, p = xs[b], ps[b]
            if n % 16 == 1:  # a check as the estimator's: 2 members x 4 directions, central differences
                r = random_directions(4, x[:2], mask=None, generator=g)
                jr = finite_difference_jvp(step, x[:2], p[:2], r, mu=1e-2, centered=True)  # the default mu
                x2, p2 = x[:2].repeat_interleave(4, 0), p[:2].repeat_interleave(4, 0)
                probes, queries = (x2, p2, r.flatten(0, 1), jr.flatten(0, 1)), queries + 2 * r.shape[0] * r.shape[1]
            loss = net.output_loss(net(x, p), step(x, p), None)
            if weight and probes is not None:
                loss = loss + weight * net.tangent_loss(*probes, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if n in (100, 300, 500, 1000, 1500, 2000, 3000) or n == args.fits:
                errors = []
                for (xt, pt), v, t in zip(test, cotangents, truth, strict=True):
                    xg = xt.clone().requires_grad_(True)
                    (ge,) = torch.autograd.grad(net(xg, pt), xg, grad_outputs=v)
                    errors.append(float((ge - t).norm() / t.norm()))
                shown = " ".join(f"{e:.3f}" for e in errors)
                ident = " ".join(f"{e:.3f}" for e in identity)
                print(f"weight={weight:g} fits={n} relative error of J_E^T v: {shown} (identity {ident})", flush=True)
        print(f"weight={weight:g}: check queries {queries} sample-steps against {4 * args.fits} fitted pairs")


if __name__ == "__main__":
    main()
