"""Couple a simulator sciml-zoo has never seen, and train a ZO-SOL correction for it.

The simulator is an Allen–Cahn solver written in numpy, a genuine black box
(no torch inside, no gradients)::

    du/dt = eps^2 lap(u) + u - u^3        periodic square of side `length`

``eps`` (the interface width, the one physical parameter) comes per sample in
``params``. One ``step`` is ``dt`` of explicit Euler sub-steps; the sub-step is
fixed by the grid and ``max_epsilon``, never by the batch, so a batch of two
gives the same result as two single calls (``check_adapter`` checks this).

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

Run ``python examples/custom_adapter.py``: about 10 s on one CPU core with the
small default of 150 training iterations (``main(iterations=...)`` for more).
The files go to a temporary folder whose name is printed.
"""

import tempfile

import numpy as np
import torch

from sciml_zoo import Capabilities, SolverBase, register
from sciml_zoo.data.generate import generate_dataset
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.evaluate import evaluate_methods
from sciml_zoo.testing import check_adapter
from sciml_zoo.train.config import ModelConfig, TrainConfig
from sciml_zoo.train.loop import RunConfig, load_training_data, train


class AllenCahnNumpy(SolverBase):
    name, param_names = "allen-cahn-numpy", ("epsilon",)
    capabilities = Capabilities(differentiable=False, batched=True)

    def __init__(self, *, resolution=(32, 32), length=32.0, dt=0.5, max_epsilon=1.6):
        self._state_shape, self.dx, self.dt = (1, resolution[1], resolution[0]), length / resolution[0], dt
        self.n_inner = int(np.ceil(dt / min(0.2 * self.dx**2 / max_epsilon**2, 0.1)))  # stable Euler

    def step(self, state, params):  # state (B, 1, H, W), params (B, 1) -> state (B, 1, H, W)
        u = state.detach().double().cpu().numpy()[:, 0]
        eps2 = params.detach().double().cpu().numpy()[:, 0, None, None] ** 2
        for _ in range(self.n_inner):
            lap = sum(np.roll(u, shift, axis) for shift in (1, -1) for axis in (1, 2)) - 4 * u
            u = u + self.dt / self.n_inner * (eps2 * lap / self.dx**2 + u - u**3)
        return torch.from_numpy(u[:, None]).to(state.dtype)

    def initial_state(self, params, *, seed):  # white noise, reproducible from the seed
        return 0.5 * torch.randn((len(params), *self.state_shape), generator=torch.Generator().manual_seed(seed))


def main(iterations=150):
    torch.set_num_threads(1)
    check_adapter(AllenCahnNumpy(resolution=(16, 16)), params=torch.tensor([[0.6], [1.2]]))
    register("allen-cahn-numpy", AllenCahnNumpy)  # a package would use an entry point instead
    train_eps, test_eps = ((0.6,), (0.9,), (1.2,), (1.5,)), ((0.75,), (1.05,), (1.35,))
    # name, solver, source and reference grids (nx, ny), parameter names, train and test values
    recipe = DatasetRecipe(
        "allen_cahn", "allen-cahn-numpy", (16, 16), (32, 32), ("epsilon",), train_eps, test_eps, 4, 40
    )  # 4 warm-up steps, 40 frames
    out = tempfile.mkdtemp(prefix="sciml-zoo-example-")
    data_file = generate_dataset(recipe, f"{out}/allen_cahn.h5", progress=False)
    data, model, runs = load_training_data(data_file), ModelConfig(width=16, kernel_size=3), {"SRC": None}
    for method, estimator in (("non", None), ("zo-sol", "identity")):
        cfg = TrainConfig(method=method, estimator=estimator, unroll=4, iterations=iterations, lr=2e-3)
        train(RunConfig(str(data_file), model, cfg), f"{out}/{method}", progress=False, data=data)
        runs[cfg.label] = f"{out}/{method}"
    errors, _ = evaluate_methods(data, runs, steps=30)
    print(f"results in {out}")
    for label, mae in errors.mean(("sim", "step")).to_series().items():
        print(f"test MAE {label:18s} {mae:.4f}")


if __name__ == "__main__":
    main()
