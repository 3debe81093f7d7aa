"""The whole comparison (generate -> train -> evaluate) on the two black-box scenes.

Tiny versions of ``sciml_zoo/presets/burgers_c.toml`` (a compiled C program
behind the external-executable protocol) and ``cahn_hilliard.toml`` (py-pde,
numpy backend so that no numba compilation is needed). Neither solver is
differentiable, so FO-SOL must be reported as n/a with the reason, while NON
and ZO-SOL train through the black box.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sciml_zoo.compare import run_comparison
from sciml_zoo.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "log.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize(
    ("preset", "solver"),
    [("burgers_c_tiny_preset.toml", "burgers-c"), ("cahn_hilliard_tiny_preset.toml", "pypde-cahn-hilliard")],
)
def test_black_box_comparison_end_to_end(preset, solver, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the preset names its recipe relative to the repository root
    exp = load_experiment(str(ASSETS / preset))
    record = run_comparison(exp, tmp_path, progress=False)

    rows = {r["method"]: r for r in record["rows"]}
    assert list(rows) == ["SRC", "NON", "ZO-SOL[identity]"]
    assert record["failed"] == {"FO-SOL": f"n/a: solver {solver!r} is not differentiable"}
    assert f"| FO-SOL | n/a: solver {solver!r} is not differentiable" in record["table"]
    assert "| FO-SOL | n/a" in (tmp_path / "results.md").read_text()
    assert not (tmp_path / "runs" / "fo-sol").exists()  # nothing was trained for it

    cfg = exp.methods["zo-sol"]
    unrolled = sum(cfg.unroll_at(i) for i in range(cfg.iterations))  # the curriculum's 1, 2, 4 (default)
    assert rows["ZO-SOL[identity]"]["train_solver_steps"] == unrolled * cfg.batch_size
    assert all(0 < r["mae"] < 1 for r in rows.values()), record["table"]
    losses = _losses(tmp_path / "runs" / "zo-sol")
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize("name", ["cahn_hilliard", "burgers_c"])
def test_full_black_box_presets_load(name, monkeypatch):
    """The shipped presets parse, find their recipes, and hold the three methods."""
    monkeypatch.chdir(ROOT)
    exp = load_experiment(name)
    assert exp.recipe.name == name and exp.eval_steps < exp.recipe.num_frames
    assert [c.method for c in exp.methods.values()] == ["non", "fo-sol", "zo-sol"]
    assert set(map(tuple, exp.recipe.train_params)).isdisjoint(map(tuple, exp.recipe.test_params))
