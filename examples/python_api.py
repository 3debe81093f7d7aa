"""The Python API in one script: generate, train, evaluate, compare with ``import sciml_zoo as sz``.

Run it with ``python examples/python_api.py [WORKDIR]`` (about a minute on two
cores). It uses the CI-sized Kuramoto–Sivashinsky preset ``ks_tiny``: 4
training and 2 test trajectories of 40 frames on a 48-point grid.

1. ``sz.generate`` writes the preset's dataset (reused when up to date).
2. ``sz.train(preset=..., method=...)`` trains one method of the preset: the
   preset's model and training tables, no config file to copy.
3. ``sz.evaluate`` rolls out SRC (the uncorrected solver) and the run on the
   test trajectories: ``errors`` is an ``xarray.DataArray`` ``(method, sim, step)``.
4. ``sz.compare`` trains every method at several seeds and returns the same
   kind of result: ``.mae`` per method and ``print(result)``, the markdown table.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sciml_zoo as sz


def train_and_evaluate(workdir: Path, *, iterations: int = 30) -> sz.Results:
    """Steps 1-3: one dataset, one NON run, its test errors beside SRC's."""
    data = sz.generate("ks_tiny", workdir / "data" / "ks_tiny.h5")
    run = sz.train(
        preset="ks_tiny",
        method="non",
        data=data,
        out=workdir / "runs" / "non",
        overrides=[f"train.iterations={iterations}"],
    )
    results = sz.evaluate(data, [run], steps=10)
    growth = results.per_step.sel({"method": "SRC"}).values  # (step,): how the uncorrected error grows
    print(f"SRC error at steps 1, 5, 10: {growth[0]:.4f}, {growth[4]:.4f}, {growth[9]:.4f}")
    return results


def compare_methods(workdir: Path, *, seeds: int = 3, iterations: int = 30) -> sz.Results:
    """Step 4: NON and ZO-SOL with the identity estimator, ``seeds`` seeds each."""
    return sz.compare(
        "ks_tiny",
        seeds=seeds,
        methods=["non", "zo-sol-identity"],
        out=workdir / "results",
        overrides=[f"train.iterations={iterations}"],
    )


def main(workdir: Path) -> None:
    results = train_and_evaluate(workdir)
    for method, mae in results.mae.items():
        print(f"test MAE {method:20s}{mae:.4f}")
    print()
    print(compare_methods(workdir))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sciml_zoo_api_")))
