"""Run a whole comparison: generate -> train every method -> evaluate with SRC.

Each stage is resumable: a complete dataset file is reused, a finished run
(``summary.json``) is skipped, an interrupted run resumes from its checkpoint.
Outputs in ``out/``: ``results.md`` and ``results.csv`` (the table),
``errors.nc`` (per-step errors, xarray/NetCDF), ``results.json`` (config,
seed, versions, numbers), ``error_vs_step.png`` and ``fields.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import xarray as xr

from sciml_zoo.data.generate import generate_dataset
from sciml_zoo.evaluate import evaluate_methods
from sciml_zoo.experiment import Experiment
from sciml_zoo.metrics import summarize
from sciml_zoo.plots import field_name, plot_error_vs_step, plot_fields
from sciml_zoo.provenance import atomic_path, environment, to_jsonable, write_json
from sciml_zoo.registry import make_solver
from sciml_zoo.train.loop import RunConfig, load_training_data, train

__all__ = ["comparison_rows", "format_table", "run_comparison"]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of comparison rows."""
    head = "| method | test MAE | ± (std over sims) | / FO-SOL | train solver steps | train wall-clock (s) |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "n/a" if r["ratio_to_fo"] is None else f"{r['ratio_to_fo']:.2f}"
        steps = "-" if r["train_solver_steps"] is None else f"{r['train_solver_steps']:,}"
        wall = "-" if r["train_wall_s"] is None else f"{r['train_wall_s']:.0f}"
        lines.append(f"| {r['method']} | {r['mae']:.4f} | {r['mae_std']:.4f} | {ratio} | {steps} | {wall} |")
    return "\n".join(lines)


def comparison_rows(
    stats: xr.Dataset, labels: list[str], summaries: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Table rows from :func:`~sciml_zoo.metrics.summarize` output and run summaries.

    ``ratio_to_fo`` is relative to the ``FO-SOL`` row when there is one.
    """
    summaries = summaries or {}

    def overall(label: str) -> float:
        return float(stats["overall"].sel({"method": label}))

    fo = overall("FO-SOL") if "FO-SOL" in labels else None
    return [
        {
            "method": label,
            "mae": overall(label),
            "mae_std": float(stats["sim_std"].sel({"method": label})),
            "ratio_to_fo": None if fo is None else overall(label) / fo,
            "train_solver_steps": summaries.get(label, {}).get("train_solver_steps"),
            "train_wall_s": summaries.get(label, {}).get("train_wall_s"),
        }
        for label in labels
    ]


def _differentiable(exp: Experiment) -> bool:
    solver = make_solver(exp.recipe.solver, **exp.recipe.solver_kwargs("source"))
    return solver.capabilities.differentiable


def run_comparison(exp: Experiment, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run ``exp`` into directory ``out`` and return the results record."""
    out = Path(out)
    t0 = time.perf_counter()
    data_path = generate_dataset(exp.recipe, out / "data" / f"{exp.recipe.name}.h5", progress=progress)
    data = load_training_data(data_path)
    runs: dict[str, Path | None] = {"SRC": None}
    skipped: dict[str, str] = {}
    can_fo = _differentiable(exp)
    summaries: dict[str, dict[str, Any]] = {}
    for key, cfg in exp.methods.items():
        if cfg.method == "fo-sol" and not can_fo:
            skipped[cfg.label] = f"n/a: solver {exp.recipe.solver!r} is not differentiable"
            continue
        run_dir = out / "runs" / key
        summary_file = run_dir / "summary.json"
        if not summary_file.is_file():
            resume = (run_dir / "checkpoint.pt").is_file()
            train(
                RunConfig(str(data_path), exp.model, cfg),
                run_dir,
                resume=resume,
                progress=progress,
                data=data,
            )
        summaries[cfg.label] = json.loads(summary_file.read_text())
        runs[cfg.label] = run_dir
    errors, trajectories = evaluate_methods(data, runs, steps=exp.eval_steps)
    stats = summarize(errors)
    rows = comparison_rows(stats, list(runs), summaries)
    table = format_table(rows)
    for label, reason in skipped.items():
        table += f"\n| {label} | {reason} | | | | |"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(f"# {exp.name}: test MAE over {exp.eval_steps} steps\n\n{table}\n")
    with atomic_path(out / "results.csv") as tmp:
        tmp.write_text(
            "method,mae,mae_std,ratio_to_fo,train_solver_steps,train_wall_s\n"
            + "".join(
                f"{r['method']},{r['mae']},{r['mae_std']},{r['ratio_to_fo']},{r['train_solver_steps']},"
                f"{r['train_wall_s']}\n"
                for r in rows
            )
        )
    ds: xr.Dataset = xr.merge([errors.to_dataset(), stats])
    ds.attrs.update(
        {
            "preset": exp.name,
            "config": json.dumps(to_jsonable(exp)),
            "versions": json.dumps(environment()),
        }
    )
    with atomic_path(out / "errors.nc") as tmp:
        ds.to_netcdf(tmp)
    plot_error_vs_step(stats["per_step"], out / "error_vs_step.png", title=f"{exp.name}: test MAE per step")
    test = data.states[data.test_idx]
    last = exp.eval_steps
    fields = {"reference": test[0, last]} | {k: v[0, last - 1] for k, v in trajectories.items()}
    what = field_name(test[0, last])
    plot_fields(fields, out / "fields.png", title=f"{what} at step {last}, first test simulation")
    record = {
        "preset": exp.name,
        "config": exp,
        "seed": {k: c.seed for k, c in exp.methods.items()},
        "versions": environment(),
        "rows": rows,
        "skipped": skipped,
        "wall_clock_s": time.perf_counter() - t0,
        "table": table,
    }
    write_json(out / "results.json", record)
    return record
