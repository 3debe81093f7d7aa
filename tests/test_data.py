"""Dataset generation, the HDF5/xarray round-trip, resume, and clear errors."""

from __future__ import annotations

import json
import os
import signal

import h5py
import numpy as np
import pytest
import torch

from sciml_zoo import DataError
from sciml_zoo.data.generate import generate_dataset, partial_path
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.data.recipe import DatasetRecipe
from sciml_zoo.data.store import open_dataset
from sciml_zoo.errors import ConfigError


def test_dataset_round_trip_has_dims_attrs_and_split(toy_dataset, toy_recipe):
    ds = open_dataset(toy_dataset)
    assert ds["state"].dims == ("sim", "time", "channel", "y", "x")
    assert ds["state"].shape == (5, toy_recipe.num_frames, 1, 8, 8)
    assert list(ds["split"].values) == ["train"] * 3 + ["test"] * 2
    np.testing.assert_allclose(ds["params"].values[:, 0], [0.002, 0.006, 0.010, 0.004, 0.008])
    assert json.loads(ds.attrs["recipe"])["warmup_steps"] == 5
    assert json.loads(ds.attrs["versions"])["packages"]["torch"].startswith("2.")
    assert ds.attrs["seed"] == 0
    data = load_dataset(toy_dataset)
    assert data.recipe == toy_recipe  # the recipe round-trips through the file


def test_frames_are_the_downsampled_reference_run(toy_dataset, toy_recipe):
    from sciml_zoo.registry import make_solver

    fine = make_solver("toy-diffusion", **toy_recipe.solver_kwargs("reference"))
    params = torch.tensor(toy_recipe.train_params + toy_recipe.test_params)
    state = fine.initial_state(params, seed=0)
    for _ in range(toy_recipe.warmup_steps):
        state = fine.step(state, params)
    frame0 = open_dataset(toy_dataset)["state"].values[:, 0]
    np.testing.assert_array_equal(frame0, fine.restrict(state, toy_recipe.source_resolution).numpy())


def test_interrupted_generation_resumes_to_the_same_file(tmp_path, toy_recipe, toy_dataset, monkeypatch):
    from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

    original = ToyDiffusion.step
    calls = {"n": 0}

    def flaky(self, state, params):
        calls["n"] += 1
        if calls["n"] == 17:  # Ctrl-C in the middle of the run (a KeyboardInterrupt the solver raised itself
            os.kill(os.getpid(), signal.SIGINT)  # would be a fault, retried: sciml_zoo.faults)
        return original(self, state, params)

    out = tmp_path / "toy.h5"
    monkeypatch.setattr(ToyDiffusion, "step", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(toy_recipe, out, progress=False)
    assert not out.exists() and partial_path(out).is_file()
    with h5py.File(partial_path(out)) as f:
        assert f.attrs["step"] == 16
    monkeypatch.setattr(ToyDiffusion, "step", original)
    generate_dataset(toy_recipe, out, progress=False)
    assert not partial_path(out).exists()
    np.testing.assert_array_equal(open_dataset(out)["state"].values, open_dataset(toy_dataset)["state"].values)


def test_missing_and_corrupt_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="not found.*sciml-zoo generate"):
        open_dataset(tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(DataError, match="corrupt"):
        open_dataset(bad)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["other"] = 1
    with pytest.raises(DataError, match="lacks"):
        open_dataset(empty)


@pytest.mark.parametrize(
    ("solver", "source", "reference", "dims"),
    [
        ("ks", (48,), (80,), ("sim", "time", "channel", "x")),  # spectral: a non-integer ratio
        ("toy-diffusion", (4, 2, 3), (8, 4, 6), ("sim", "time", "channel", "z", "y", "x")),
    ],
)
def test_1d_and_3d_datasets_have_named_dims_and_restricted_frames(tmp_path, solver, source, reference, dims):
    from sciml_zoo.registry import make_solver

    params = ((),) if solver == "ks" else ((0.01,),)
    recipe = DatasetRecipe(
        name="nd",
        solver=solver,
        source_resolution=source,
        reference_resolution=reference,
        param_names=() if solver == "ks" else ("diffusivity",),
        train_params=params * 2,
        test_params=params,
        warmup_steps=3,
        num_frames=4,
    )
    ds = open_dataset(generate_dataset(recipe, tmp_path / "nd.h5", progress=False))
    assert ds["state"].dims == dims and ds["valid_mask"].dims == dims[2:]
    assert ds["state"].shape == (3, 4, 1, *reversed(source))
    fine = make_solver(solver, **recipe.solver_kwargs("reference"))
    p = torch.tensor(recipe.train_params + recipe.test_params, dtype=torch.float32)
    state = fine.initial_state(p, seed=0)
    for _ in range(recipe.warmup_steps):
        state = fine.step(state, p)
    np.testing.assert_array_equal(ds["state"].values[:, 0], fine.restrict(state, source).numpy())
    assert load_dataset(tmp_path / "nd.h5").recipe == recipe


@pytest.mark.parametrize(
    ("source", "reference", "words"),
    [
        ((32, 32), (64,), "same number"),
        ((8, 8, 8, 8), (16, 16, 16, 16), "1 to 3"),
        ((32,), (16,), "at least as fine"),
        ((0,), (16,), "positive integers"),
    ],
)
def test_recipe_resolutions_are_checked(source, reference, words) -> None:
    with pytest.raises(ConfigError, match=words):
        DatasetRecipe(
            name="bad",
            solver="toy-diffusion",
            source_resolution=source,
            reference_resolution=reference,
            param_names=(),
            train_params=((),),
            test_params=((),),
        )


def test_generation_names_missing_data_hooks(tmp_path, monkeypatch):
    from sciml_zoo import registry

    class StepOnly:
        name, param_names, state_shape = "step-only", ("k",), (1, 4)
        capabilities = None

        def step(self, state, params):
            return state

    monkeypatch.setitem(registry._RUNTIME, "step-only", lambda **_: StepOnly())  # undone after the test
    recipe = DatasetRecipe(
        name="x",
        solver="step-only",
        source_resolution=(4,),
        reference_resolution=(4,),
        param_names=("k",),
        train_params=((1.0,),),
        test_params=((1.0,),),
    )
    with pytest.raises(DataError, match=r"lacks initial_state, restrict\(\).*SolverBase"):
        generate_dataset(recipe, tmp_path / "x.h5", progress=False)
