"""The 1D NumPy adapters share one frame (``sciml_zoo_solvers._grid1d.NumPyLine``), as the 2D ones share
``_grid``; moving them onto it kept their outputs (pinned here: three float64 frames from seed 3, values
recorded before the move, where they were bit-identical)."""

from __future__ import annotations

import pytest
import torch

from sciml_zoo.registry import make_solver
from sciml_zoo.testing import check_adapter
from sciml_zoo_solvers._grid1d import NumPyLine

CASES = {
    "fitzhugh-nagumo": ({"resolution": (32,)}, [[0.08], [0.12]], 95.1060789675382, 2.280481036406151),
    "ginzburg-landau": ({"resolution": (32,)}, [[-1.2], [-0.8]], -0.09873451170103922, 0.0881112725076999),
    "shallow-water": ({"resolution": (32,)}, [[9.8], [5.0]], 63.99999998626299, 1.097218630722705),
    "shallow-water/order-2": ({"resolution": (32,), "order": 2}, [[9.8], [5.0]], 63.999999986263, 1.1247111613308178),
    "lorenz96": ({"resolution": (8,), "fast_per_slow": 4}, [[], []], 122.5654738037567, 9.382156563270962),
    "lorenz96/one-scale": ({"resolution": (8,)}, [[], []], 108.57453400113845, 9.544915304011809),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_frame_for_the_1d_numpy_adapters_with_their_outputs_kept(case):
    options, params, total, largest = CASES[case]
    solver = make_solver(case.split("/")[0], **options)
    assert isinstance(solver, NumPyLine) and not solver.capabilities.differentiable and solver.capabilities.batched
    p = torch.tensor(params, dtype=torch.float32).reshape(2, -1)
    x = solver.initial_state(p, seed=3).double()
    for _ in range(3):
        x = solver.step(x, p)
    assert x.dtype == torch.float64 and tuple(x.shape[1:]) == solver.state_shape
    assert float(x.sum()) == pytest.approx(total, rel=1e-12, abs=1e-12)
    assert float(x.abs().max()) == pytest.approx(largest, rel=1e-12)
    assert solver.describe()["resolution"] == [options["resolution"][0]]
    if case != "lorenz96":  # two-scale Lorenz-96 restricts onto the slow variables only, by design
        check_adapter(solver)
