"""compare: several seeds, honest reuse (config hash), failed methods named, unique labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import xarray as xr

from sciml_zoo.compare import run_comparison
from sciml_zoo.errors import ConfigError
from sciml_zoo.experiment import load_experiment
from sciml_zoo.tables import comparison_rows, format_paired, paired_rows, seed_summary, sign_test_p, t_quantile_975

ASSETS = Path(__file__).parent / "assets"
PRESET = str(ASSETS / "toy_preset.toml")
FAST = ["train.iterations=6", "train.checkpoint_every=3", "eval_steps=[5, 8]"]


def test_seed_statistics():
    s = seed_summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    assert math.isclose(s["ci95"], 4.303 / math.sqrt(3))
    assert seed_summary([2.0])["std"] == 0.0 and math.isnan(t_quantile_975(0))
    assert abs(t_quantile_975(30) - 2.042) < 0.01 and abs(t_quantile_975(1000) - 1.962) < 0.01


def test_sign_test_is_exact():
    assert sign_test_p(3, 3) == 0.25 and sign_test_p(0, 3) == 0.25 and sign_test_p(5, 5) == 0.0625
    assert math.isclose(sign_test_p(6, 6), 1 / 32) and sign_test_p(2, 4) == 1.0 and math.isnan(sign_test_p(0, 0))


def _errors(per_seed: dict[str, list[float]]) -> xr.DataArray:
    """(seed, method, sim, step) errors whose mean over sims and steps is the given per-seed MAE."""
    methods = list(per_seed)
    vals = [[[[per_seed[m][s]] * 2] * 2 for m in methods] for s in range(len(per_seed[methods[0]]))]
    return xr.DataArray(vals, dims=("seed", "method", "sim", "step"), coords={"method": methods})


def test_paired_differences_say_when_a_gap_exceeds_the_seed_spread():
    errors = _errors(
        {
            "NON": [0.10, 0.20, 0.30, 0.15],
            "A": [0.09, 0.19, 0.29, 0.14],  # better by 0.01 at every seed: the spread of NON is irrelevant
            "B": [0.05, 0.30, 0.25, 0.15],  # better on average, not beyond noise
            "C": [0.12, 0.22, 0.33, 0.16],  # worse at every seed
        }
    )
    rows = {r["method"]: r for r in paired_rows(errors, ["NON", "A", "B", "C"])}
    assert set(rows) == {"A", "B", "C"} and all(r["baseline"] == "NON" for r in rows.values())
    a, b, c = rows["A"], rows["B"], rows["C"]
    assert math.isclose(a["diff"], -0.01) and a["diff_std"] < 1e-12 and a["verdict"] == "better"
    assert a["wins"] == 4 and a["seeds"] == 4 and a["sign_p"] == 0.125
    assert b["diff"] < 0 and b["verdict"] == "within noise" and b["wins"] == 2
    assert c["verdict"] == "worse" and c["wins"] == 0
    text = format_paired(list(rows.values()))
    assert "| A | NON | -0.0100 ± 0.0000 |" in text and "4 of 4" in text
    assert paired_rows(errors.isel(seed=[0]), ["NON", "A"]) == [] and format_paired([]) == ""
    free = _errors({"NON": [0.2, 0.3], "ZO-SOL[identity]": [0.3, 0.4], "ZO-SOL[x]": [0.1, 0.2], "SRC": [0.5, 0.5]})
    pairs = {(r["method"], r["baseline"]) for r in paired_rows(free, list(free["method"].values))}
    # only the method that uses solver gradients faces the free baseline
    assert pairs == {
        ("ZO-SOL[identity]", "NON"),
        ("ZO-SOL[x]", "NON"),
        ("SRC", "NON"),
        ("ZO-SOL[x]", "ZO-SOL[identity]"),
    }


def test_fault_counts_add_up_over_seeds_and_gauges_keep_the_largest():
    errors = _errors({"A": [0.1, 0.2]})
    summaries = {
        "A": [
            {"faults": {"fallback_steps": 2, "radius": 4, "last_residual": 0.3}},
            {"faults": {"fallback_steps": 1, "radius": 2, "last_residual": 0.1}},
        ]
    }
    (row,) = comparison_rows(errors, ["A"], summaries)
    assert row["faults"] == {"fallback_steps": 3, "radius": 4, "last_residual": 0.3}


def test_several_seeds_give_mean_std_interval_and_ratios(tmp_path):
    exp = load_experiment(PRESET, overrides=FAST, seeds=2)
    record = run_comparison(exp, tmp_path, progress=False)
    rows = {r["method"]: r for r in record["rows"]}
    assert list(rows) == ["SRC", "NON", "FO-SOL"]
    fo = rows["FO-SOL"]
    assert fo["seeds"] == 2 and len(fo["per_seed"]) == 2 and fo["per_seed"][0] != fo["per_seed"][1]
    assert math.isclose(fo["mae"], sum(fo["per_seed"]) / 2)
    assert fo["ratio_to_fo"] == 1.0 and fo["ratio_std"] == 0.0 and rows["SRC"]["seed_std"] == 0.0
    assert set(rows["NON"]["horizons"]) == {5, 8}
    for k in (0, 1):
        assert (tmp_path / "runs" / "fo-sol" / f"seed{k}" / "summary.json").is_file()
    assert "mean ± std, 2 seeds" in record["table"] and "95% CI" in record["table"]
    paired = {(r["method"], r["baseline"]): r for r in record["paired"]}
    assert set(paired) == {("SRC", "FO-SOL"), ("NON", "FO-SOL"), ("SRC", "NON"), ("FO-SOL", "NON")}
    assert paired[("NON", "FO-SOL")]["per_seed"] == pytest.approx(
        [n - f for n, f in zip(rows["NON"]["per_seed"], fo["per_seed"], strict=True)]
    )
    assert "Paired by seed" in record["table"] and "Paired by seed" in (tmp_path / "results.md").read_text()
    errors = xr.open_dataset(tmp_path / "errors.nc")
    assert errors["mae"].sizes == {"seed": 2, "method": 3, "sim": 2, "step": 8}
    assert "param_diffusivity" in errors.coords
    saved = json.loads((tmp_path / "results.json").read_text())
    assert {(r["method"], r["seed"]) for r in saved["runs"]} == {(m, s) for m in ("NON", "FO-SOL") for s in (0, 1)}
    assert all(len(r["hash"]) == 16 and r["versions"]["packages"]["torch"] for r in saved["runs"])
    for name in ("cost_accuracy.png", "error_vs_step.png", "results.csv", "results.md"):
        assert (tmp_path / name).is_file()
    assert "mae_8" in (tmp_path / "results.csv").read_text().splitlines()[0]


def test_a_run_made_by_another_config_is_not_reused(tmp_path):
    exp = load_experiment(PRESET, overrides=FAST, only=["non"])
    run_comparison(exp, tmp_path, progress=False)
    changed = load_experiment(PRESET, overrides=[*FAST, "model.width=4"], only=["non"])
    with pytest.raises(ConfigError, match="different config, dataset or code version.*--force"):
        run_comparison(changed, tmp_path, progress=False)
    record = run_comparison(changed, tmp_path, progress=False, force=True)
    saved = json.loads((tmp_path / "runs" / "non" / "config.json").read_text())
    assert saved["config"]["model"]["width"] == 4 and record["rows"][1]["method"] == "NON"


def test_a_failed_method_is_named_and_the_others_are_tabled(tmp_path):
    overrides = [*FAST, "methods.fo-sol.lr=1e30", "methods.fo-sol.optimizer=SGD", "methods.fo-sol.method=non"]
    overrides += ["methods.fo-sol.checkpoint_every=1"]
    exp = load_experiment(PRESET, overrides=overrides)
    labels = exp.labels()
    assert labels == {"non": "NON (non)", "fo-sol": "NON (fo-sol)"}  # two NON methods keep separate rows
    record = run_comparison(exp, tmp_path, progress=False)
    assert [r["method"] for r in record["rows"]] == ["SRC", "NON (non)"]
    assert "diverged" in record["failed"]["NON (fo-sol)"]
    assert "| NON (fo-sol) | failed: " in record["table"]


def test_compare_locks_its_directory_and_cleans_orphan_temp_files(tmp_path):
    from sciml_zoo.runs import run_lock

    exp = load_experiment(PRESET, overrides=FAST, only=["non"])
    with run_lock(tmp_path), pytest.raises(ConfigError, match="another process"):
        run_comparison(exp, tmp_path, progress=False)
    orphan = tmp_path / ".results.json.x1y2.tmp"
    orphan.write_text("torn")
    run_comparison(exp, tmp_path, progress=False)
    assert not orphan.exists()


def test_evaluating_no_runs_gives_an_empty_method_axis(toy_dataset):
    """A seed whose every run failed leaves compare nothing to evaluate: an empty table, not a crash."""
    from sciml_zoo.data.loading import load_dataset
    from sciml_zoo.evaluate import evaluate_methods

    data = load_dataset(toy_dataset)
    errors, trajectories = evaluate_methods(data, {}, steps=3)
    assert errors.sizes["method"] == 0 and errors.sizes["step"] == 3 and trajectories == {}
    src, _ = evaluate_methods(data, {"SRC": None}, steps=3)
    both = xr.concat([src, errors], dim="method").reindex({"method": ["SRC", "NON"]})
    assert bool(both.sel({"method": "NON"}).isnull().all()) and bool(both.sel({"method": "SRC"}).notnull().all())
