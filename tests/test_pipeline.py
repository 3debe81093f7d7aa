"""The whole comparison pipeline on the toy preset, and process-pool training."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import xarray as xr

from sciml_zoo.compare import run_comparison
from sciml_zoo.experiment import load_experiment

ASSETS = Path(__file__).parent / "assets"


def test_compare_runs_end_to_end_and_records_everything(tmp_path):
    exp = load_experiment(str(ASSETS / "toy_preset.toml"))
    record = run_comparison(exp, tmp_path, progress=False)
    rows = {r["method"]: r for r in record["rows"]}
    assert list(rows) == ["SRC", "NON", "FO-SOL"]
    assert rows["FO-SOL"]["mae"] < 0.7 * rows["SRC"]["mae"]
    assert rows["NON"]["mae"] < 0.7 * rows["SRC"]["mae"]
    fo = exp.methods["fo-sol"]  # the default curriculum unrolls 1, 2, then 4 steps
    assert fo.curriculum and rows["FO-SOL"]["train_solver_steps"] == 50 * 3 * (1 + 2 + 4)
    for name in (
        "results.md",
        "results.csv",
        "errors.nc",
        "results.json",
        "error_vs_step.png",
        "fields.png",
    ):
        assert (tmp_path / name).is_file(), name
    errors = xr.open_dataset(tmp_path / "errors.nc")
    assert errors["mae"].sizes == {"method": 3, "sim": 2, "step": 20}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["versions"]["packages"]["torch"] and saved["config"]["methods"]["fo-sol"]["seed"] == 0
    # a second call reuses the dataset and the finished runs: same numbers, no retraining
    again = run_comparison(exp, tmp_path, progress=False)
    assert [r["mae"] for r in again["rows"]] == [r["mae"] for r in record["rows"]]


def test_process_pool_workers_give_the_same_training_as_in_process(tmp_path, monkeypatch):
    """A non-batched black box (the C Burgers solver) with its queries fanned out
    to two worker processes trains to bit-identical weights; every query of that
    run went to the pool (training that ignored the workers would fail here)."""
    import sciml_zoo.faults as faults
    from sciml_zoo.config import ModelConfig, TrainConfig
    from sciml_zoo.data.generate import generate_dataset
    from sciml_zoo.data.recipe import DatasetRecipe
    from sciml_zoo.runs import RunConfig
    from sciml_zoo.train.loop import train

    recipe = DatasetRecipe(
        name="burgers",
        solver="burgers-c",
        source_resolution=(8, 8),
        reference_resolution=(16, 16),
        param_names=("viscosity",),
        train_params=((0.01,), (0.03,)),
        test_params=((0.02,),),
        warmup_steps=2,
        num_frames=8,
        solver_options={"dt": 0.1},
    )
    data = generate_dataset(recipe, tmp_path / "b.h5", progress=False)
    rows: list[int] = []

    class Recording(faults.ProcessPoolSolverExecutor):
        def submit_tasks(self, solver, blocks, **kw):
            rows.append(sum(len(s) for s, _ in blocks))
            return super().submit_tasks(solver, blocks, **kw)

    monkeypatch.setattr(faults, "ProcessPoolSolverExecutor", Recording)
    weights, steps = [], []
    for workers in (0, 2):
        cfg = TrainConfig(
            method="zo-sol",
            estimator="state-rge",
            estimator_options={"num_directions": 2},
            unroll=2,
            iterations=3,
            batch_size=2,
            lr=1e-3,
            workers=workers,
        )
        summary = train(
            RunConfig(str(data), ModelConfig(width=4, kernel_size=3), cfg),
            tmp_path / f"w{workers}",
            progress=False,
        )
        steps.append(summary["train_solver_steps"])
        weights.append(torch.load(tmp_path / f"w{workers}" / "checkpoint.pt", weights_only=False)["model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert sum(rows) == steps[1] == steps[0] > 0  # the pool answered every query of the workers=2 run
