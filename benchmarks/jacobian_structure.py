"""How local and how self-adjoint is a scene's step Jacobian? The structure that decides which estimate can work.

Usage:
    python benchmarks/jacobian_structure.py [--presets gray_scott brusselator] [--cells 8]

For each preset's dataset (read from ``data/<name>.h5`` or generated into a
temporary folder), the exact Jacobian ``J`` of the source solver's step is
built column by column from central differences (as
``benchmarks/emulator_tangent_fit.py`` does; keep the state small) at two
held-out test states. Printed per preset::

    <preset> state (C, *spatial) radius r: <share> ... asymmetry <|J - J^T|_F / |J|_F> identity <|J - I|_F / |J|_F>

where ``share`` is the part of ``|J|_F^2`` (averaged over ``--cells`` random
output cells of both states, all channels) within Chebyshev distance ``r``
(periodic) of the output cell: the coupling radius a coloured or banded
Jacobian must cover, against the default emulator's receptive radius
(``depth * (kernel_size // 2)`` = 6). ``asymmetry`` near 0 means ``J v`` serves
for ``J^T v`` (the emulator estimator's transpose candidate). No method uses
these Jacobians; they cost ``2 * C * prod(spatial)`` queries per state.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from emulator_tangent_fit import _jacobian

from sciml_zoo.data.cache import dataset_for
from sciml_zoo.data.loading import source_solver
from sciml_zoo.experiment import load_experiment

RADII = (0, 1, 2, 3, 4, 6, 8)


def _distance(shape: tuple[int, ...], cell: tuple[int, ...]) -> torch.Tensor:
    """Periodic Chebyshev distance of every grid point ``shape`` from ``cell``."""
    axes = []
    for n, c in zip(shape, cell, strict=True):
        d = (torch.arange(n) - c).abs()
        axes.append(torch.minimum(d, n - d))
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grids).amax(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="*", default=["gray_scott", "brusselator"])
    ap.add_argument("--cells", type=int, default=8, help="random output cells per state [8]")
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    for preset in args.presets:
        exp = load_experiment(preset)
        with tempfile.TemporaryDirectory() as tmp:
            _, data = dataset_for(exp.recipe, Path(tmp), shared_dir="data", progress=False)
        solver = source_solver(data)

        def step(x: torch.Tensor, p: torch.Tensor, solver: Any = solver) -> torch.Tensor:
            with torch.no_grad():
                return solver.step(x, p)

        shares, asym, ident = torch.zeros(len(RADII)), [], []
        for i, t in ((0, 30), (1, 45)):
            x, p = data.test.states[i, t : t + 1], data.test.params[i : i + 1]
            channels, spatial = x.shape[1], tuple(x.shape[2:])
            jac = _jacobian(step, x, p)
            asym.append(float((jac - jac.T).norm() / jac.norm()))
            ident.append(float((jac - torch.eye(len(jac))).norm() / jac.norm()))
            rows = jac.view(channels, *spatial, channels, *spatial)
            for _ in range(args.cells):
                cell = tuple(int(torch.randint(n, (1,), generator=gen)) for n in spatial)
                row = rows[(slice(None), *cell)].pow(2)  # (C, C, *spatial)
                dist = _distance(spatial, cell)
                shares += torch.tensor([float(row[..., dist <= r].sum() / row.sum()) for r in RADII])
        shares /= 2 * args.cells
        radii = " ".join(f"r{r}:{s:.4f}" for r, s in zip(RADII, shares.tolist(), strict=True))
        shape = (channels, *spatial)
        print(
            f"{preset} state {shape} radius {radii} asymmetry {sum(asym) / 2:.3f} identity {sum(ident) / 2:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
