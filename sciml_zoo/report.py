"""The files a comparison writes: ``results.md``/``.csv``, ``errors.nc``, the figures, the run records.

:func:`write_report` turns the per-step test errors of :mod:`sciml_zoo.compare`
into rows (mean over simulations and seeds, horizons, paired differences),
writes them with the errors and figures into ``out/``, and returns what goes
into ``results.json``. It writes nothing outside ``out/`` and trains nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import xarray as xr

from sciml_zoo.config import RunConfig
from sciml_zoo.data.loading import Dataset
from sciml_zoo.experiment import Experiment
from sciml_zoo.figures import plot_cost_accuracy, plot_error_band
from sciml_zoo.plots import field_name, plot_fields
from sciml_zoo.provenance import atomic_path, environment, to_jsonable
from sciml_zoo.tables import FAULT_NAMES, comparison_rows, format_paired, format_table, paired_rows, seed_summary

__all__ = ["FinishedRun", "write_report", "write_tables", "write_errors", "run_records", "plot_first_fields"]


class FinishedRun(Protocol):
    """A finished training run of the comparison (``compare``'s plan of it)."""

    @property
    def key(self) -> str: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def label(self) -> str: ...
    @property
    def config(self) -> RunConfig: ...
    @property
    def dir(self) -> Path: ...
    @property
    def hash(self) -> str: ...


def write_report(
    exp: Experiment,
    out: Path,
    data: Dataset,
    finished: Sequence[FinishedRun],
    summaries: dict[str, list[dict[str, Any]]],
    failed: dict[str, str],
    errors: xr.DataArray,
    trajectories: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, list[dict[str, Any]]]:
    """Write the tables, ``errors.nc`` and the figures; return the rows, paired rows, table and run records."""
    method_labels = [str(m) for m in errors["method"].values]  # SRC, then the finished methods
    headline = errors.sel(step=slice(1, exp.eval_steps))
    rows = comparison_rows(headline, method_labels, summaries)
    for r in rows:
        r["horizons"] = {
            h: seed_summary(
                errors.sel({"step": slice(1, h), "method": r["method"]}).mean(("sim", "step")).values.tolist()
            )["mean"]
            for h in exp.horizons
        }
    paired = paired_rows(headline, method_labels)
    table = "\n\n".join(t for t in (format_table(rows, failed), format_paired(paired)) if t)
    write_tables(out, exp, rows, table)
    write_errors(out, exp, errors)
    plot_error_band(errors.mean("sim"), out / "error_vs_step.png", title=f"{exp.name}: test MAE per step")
    points, records = run_records(exp, finished, errors)
    plot_cost_accuracy(points, out / "cost_accuracy.png", title=f"{exp.name}: cost against test MAE")
    plot_first_fields(out, data, trajectories, exp.eval_steps)
    return rows, paired, table, records


def write_errors(out: Path, exp: Experiment, errors: xr.DataArray) -> None:
    saved = errors.isel(seed=0, drop=True) if exp.seeds is None else errors
    ds = xr.Dataset({"mae": saved, "per_step": saved.mean("sim")})
    ds.attrs.update({"preset": exp.name, "config": json.dumps(to_jsonable(exp)), "versions": json.dumps(environment())})
    with atomic_path(out / "errors.nc") as tmp:
        ds.to_netcdf(tmp)


def run_records(
    exp: Experiment, finished: Sequence[FinishedRun], errors: xr.DataArray
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One cost/accuracy point and one ``results.json`` record per finished run."""
    points, run_records = [], []
    for p in finished:
        summary = json.loads((p.dir / "summary.json").read_text())
        seed = -1 if p.seed is None else p.seed
        mae = float(errors.sel({"method": p.label, "seed": seed, "step": slice(1, exp.eval_steps)}).mean())
        steps, wall = summary.get("train_solver_steps"), summary.get("train_wall_s")
        points.append({"method": p.label, "mae": mae, "train_solver_steps": steps, "train_wall_s": wall})
        run_records.append(
            {
                "method": p.label,
                "key": p.key,
                "seed": p.config.train.seed,
                "dir": str(p.dir),
                "hash": p.hash,
                "config": p.config,
                "test_mae": mae,
                "train_solver_steps": steps,
                "train_wall_s": wall,
                "faults": summary.get("faults"),
                "versions": summary.get("versions"),
            }
        )
    return points, run_records


def write_tables(out: Path, exp: Experiment, rows: list[dict[str, Any]], table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(f"# {exp.name}: test MAE over {exp.eval_steps} steps\n\n{table}\n")
    cols = ["method", "mae", "mae_std", "seeds", "seed_std", "ci95", "ratio_to_fo", "ratio_std"]
    cols += ["train_solver_steps", "train_wall_s"]
    horizons = [f"mae_{h}" for h in exp.horizons]
    lines = [",".join(cols + horizons + list(FAULT_NAMES))]
    for r in rows:
        cells = [r[c] for c in cols] + [r["horizons"][h] for h in exp.horizons]
        cells += [(r.get("faults") or {}).get(k, 0) for k in FAULT_NAMES]
        lines.append(",".join(str(c) for c in cells))
    with atomic_path(out / "results.csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def plot_first_fields(out: Path, data: Dataset, trajectories: dict[str, Any], last: int) -> None:
    test = data.test.states
    fields = {"reference": test[0, last]} | {k: v[0, last - 1] for k, v in trajectories.items()}
    what = field_name(test[0, last])
    plot_fields(fields, out / "fields.png", title=f"{what} at step {last}, first test simulation")
