"""Couple a simulator sciml-zoo has never seen, and train a ZO-SOL correction for it.

The simulator is an Allen–Cahn solver written in numpy, a genuine black box
(no torch inside, no gradients)::

    du/dt = eps^2 lap(u) + u - u^3        periodic box of side `length`

``eps`` (the interface width, the one physical parameter) comes per sample in
``params``. One ``step`` is ``dt`` of explicit Euler sub-steps; the sub-step is
fixed by the grid and ``max_epsilon``, never by the batch, so a batch of two
gives the same result as two single calls (``check_adapter`` checks this).
The adapter works on 1, 2 or 3 spatial axes: the grid comes from
``resolution=(nx,)``, ``(nx, ny)`` or ``(nx, ny, nz)`` and the state is
``(B, 1, *spatial)`` with x last, as the library expects.

The walk-through of docs/adapters.md, in order:

1. subclass :class:`sciml_zoo.SolverBase`: ``step`` for training, and
   ``initial_state`` for data generation (the inherited ``restrict``
   block-averages fine states onto the source grid);
2. check it with :func:`sciml_zoo.testing.check_adapter` and
   :func:`sciml_zoo.register` it under a name;
3. describe a dataset with a :class:`~sciml_zoo.data.recipe.DatasetRecipe`
   (fine 32x32 runs, block-averaged onto the 16x16 source grid; 4 training
   and 3 test values of ``eps``) and generate it;
4. train NON and ZO-SOL. ZO-SOL unrolls 4 solver steps with the correction
   after each and backpropagates exactly through the network and, through the
   black box, with the ``identity`` solver-space estimate ``J^T v ~ v``;
5. evaluate against SRC (the uncorrected 16x16 solver) over 30 test steps.

Run ``python examples/custom_adapter.py``: about 15 s on one CPU core with the
small default of 150 training iterations (``main(iterations=...)`` for more).
The files go to a temporary folder whose name is printed.
"""

import tempfile

import numpy as np
import torch

from sciml_zoo import Capabilities, SolverBase, register
from sciml_zoo.config import ModelConfig, TrainConfig
from sciml_zoo.data.generate import generate_dataset
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.evaluate import evaluate_methods
from sciml_zoo.runs import RunConfig
from sciml_zoo.testing import check_adapter
from sciml_zoo.train.loop import train


class AllenCahnNumpy(SolverBase):
    """Allen–Cahn in numpy on a periodic grid of 1, 2 or 3 axes; a batched black box."""

    name = "allen-cahn-numpy"
    param_names = ("epsilon",)
    capabilities = Capabilities(differentiable=False, batched=True)

    def __init__(self, *, resolution=(32, 32), length=32.0, dt=0.5, max_epsilon=1.6):
        spatial = tuple(reversed(resolution))  # (nx, ny, nz) -> array axes (z, y, x): x last
        self._state_shape = (1, *spatial)
        self.spacing = [length / n for n in spatial]  # grid spacing per array axis
        self.dt = dt
        # explicit Euler is stable for eps^2 dt / dx^2 <= 1 / (2 d); stay below it, fixed per grid (not per batch)
        stable_dt = 0.4 / len(spatial) * min(self.spacing) ** 2 / max_epsilon**2
        self.n_inner = int(np.ceil(dt / min(stable_dt, 0.1)))

    def laplacian(self, u):
        """Periodic second differences summed over the spatial axes of ``u`` (B, *spatial)."""
        total = np.zeros_like(u)
        for axis, dx in enumerate(self.spacing, start=1):
            total += (np.roll(u, 1, axis) + np.roll(u, -1, axis) - 2 * u) / dx**2
        return total

    def step(self, state, params):
        """Advance ``state`` (B, 1, *spatial) by ``dt``; ``params`` (B, 1) holds each member's epsilon."""
        u = state.detach().double().cpu().numpy()[:, 0]
        epsilon = params.detach().double().cpu().numpy()[:, 0]
        eps2 = epsilon.reshape(-1, *([1] * (u.ndim - 1))) ** 2  # broadcast over the spatial axes
        h = self.dt / self.n_inner
        for _ in range(self.n_inner):
            u = u + h * (eps2 * self.laplacian(u) + u - u**3)
        return torch.from_numpy(u[:, None]).to(state.dtype)

    def initial_state(self, params, *, seed):
        """Seeded white noise, one field per parameter row."""
        generator = torch.Generator().manual_seed(seed)
        return 0.5 * torch.randn((len(params), *self.state_shape), generator=generator)


def main(iterations=150):
    torch.set_num_threads(1)

    # 1. check the adapter on the source grid, then register it under its name
    check_adapter(AllenCahnNumpy(resolution=(16, 16)), params=torch.tensor([[0.6], [1.2]]))
    register("allen-cahn-numpy", AllenCahnNumpy)  # a package would use an entry point instead

    # 2. a dataset: fine 32x32 runs block-averaged onto the 16x16 source grid
    recipe = DatasetRecipe(
        name="allen_cahn",
        solver="allen-cahn-numpy",
        source_resolution=(16, 16),
        reference_resolution=(32, 32),
        param_names=("epsilon",),
        train_params=((0.6,), (0.9,), (1.2,), (1.5,)),
        test_params=((0.75,), (1.05,), (1.35,)),
        warmup_steps=4,
        num_frames=40,
    )
    out = tempfile.mkdtemp(prefix="sciml-zoo-example-")
    data_file = generate_dataset(recipe, f"{out}/allen_cahn.h5", progress=False)
    data = load_dataset(data_file)

    # 3. train NON and ZO-SOL (black-box solver, identity estimate of its Jacobian)
    model = ModelConfig(width=16, kernel_size=3, padding="circular")  # circular: the domain is periodic
    runs = {"SRC": None}  # SRC: the uncorrected source solver
    for method, estimator in [("non", None), ("zo-sol", "identity")]:
        config = TrainConfig(method=method, estimator=estimator, unroll=4, iterations=iterations, lr=2e-3)
        run_dir = f"{out}/{method}"
        train(RunConfig(data=str(data_file), model=model, train=config), run_dir, progress=False, data=data)
        runs[config.label] = run_dir

    # 4. evaluate every method over 30 steps from the first test frame
    errors, _ = evaluate_methods(data, runs, steps=30)
    print(f"results in {out}")
    for label, mae in errors.mean(("sim", "step")).to_series().items():
        print(f"test MAE {label:18s} {mae:.4f}")


if __name__ == "__main__":
    main()
