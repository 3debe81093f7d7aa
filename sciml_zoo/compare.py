"""Run a whole comparison: generate -> train every method (at every seed) -> evaluate with SRC.

Each stage is resumable and honest about reuse: a finished run is reused only
if the hash of its full config, the dataset and the code-relevant versions
matches (otherwise one line says so and ``--force`` retrains it); an
interrupted run with the same hash resumes from its checkpoint. A method that
fails (diverges, its solver fails) is named with the reason, and the table is
printed for the others. Outputs in ``out/``: ``results.md`` and ``results.csv``
(the table), ``errors.nc`` (per-step errors by seed, method, simulation, with
every physical parameter), ``results.json`` (config, seed, versions, hashes of
every number), ``error_vs_step.png`` (a band over seeds), ``cost_accuracy.png``
and ``fields.png``, written by :mod:`sciml_zoo.report`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from sciml_zoo.data.cache import dataset_for
from sciml_zoo.data.loading import Dataset, source_solver
from sciml_zoo.errors import ConfigError, SciMLZooError, check_positive_int
from sciml_zoo.evaluate import evaluate_methods
from sciml_zoo.experiment import Experiment
from sciml_zoo.paths import remove_tool_dir, safe_child
from sciml_zoo.provenance import environment, write_json
from sciml_zoo.report import write_report
from sciml_zoo.runs import RunConfig, clean_stale_temp_files, config_hash, run_lock
from sciml_zoo.train.loop import train
from sciml_zoo.train.pool import PoolRun, train_in_pool

__all__ = ["run_comparison"]


@dataclass(frozen=True)
class _Plan:
    """One training run of the comparison."""

    key: str
    seed: int | None
    label: str
    config: RunConfig
    dir: Path
    hash: str


def _run_dir(out: Path, key: str, seed: int | None) -> Path:
    """``out/runs/<key>[/seed<seed>]``, each part a plain name that stays inside ``out`` (no symlinks)."""
    key_dir = safe_child(safe_child(out, "runs", what="runs folder"), key, what="method key in [methods]")
    return key_dir if seed is None else safe_child(key_dir, f"seed{seed}", what="seed folder")


def _recorded_hash(run_dir: Path) -> str | None:
    for name in ("summary.json", "config.json"):
        f = run_dir / name
        if f.is_file():
            try:
                return json.loads(f.read_text()).get("hash")
            except (OSError, json.JSONDecodeError):
                return None
    return None


def _check_reuse(plans: list[_Plan], force: bool) -> None:
    """Refuse (or with ``force`` clear) run directories made by another config, dataset or code."""
    markers = ("config.json", "checkpoint.pt", "summary.json")
    used = [p for p in plans if any((p.dir / m).exists() for m in markers)]
    stale = [p for p in used if _recorded_hash(p.dir) != p.hash]
    if stale and not force:
        first = stale[0].dir
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise ConfigError(
            f"run {first}{more} was made with a different config, dataset or code version than this comparison; "
            "rerun with --force to retrain it, or use another --out"
        )
    for p in stale:
        remove_tool_dir(p.dir)  # only a folder the tool created (its marker): never a user's own


def _check_unrolls(exp: Experiment) -> None:
    """Every method's unroll (its curriculum's last stage) fits the recipe's trajectories: one line if not."""
    for key, cfg in exp.methods.items():
        fix = f"methods.{key}.unroll="
        cfg.check_trajectory_length(exp.recipe.num_frames, dataset=f"recipe {exp.recipe.name!r}", fix=fix)


def run_comparison(
    exp: Experiment,
    out: str | Path,
    *,
    progress: bool = True,
    force: bool = False,
    device: str = "cpu",
    shared_data: str | Path | None = "data",
    jobs: int = 1,
) -> dict[str, Any]:
    """Run ``exp`` into directory ``out`` and return the results record.

    ``jobs`` runs (method x seed) train at once, each in its own worker
    process on one core (the same results as one after another).

    ``out`` is locked for the duration (a second ``compare`` into it gets one
    line) and cleared of temp files that killed writes left.

    The dataset is ``<shared_data>/<recipe name>.h5`` (where ``sciml-zoo
    generate`` writes by default, relative to the working directory) when its
    hash is the recipe's (recipe, solver, adapter code); otherwise
    ``out/data/<recipe name>.h5``, generated or regenerated to that hash
    (:func:`~sciml_zoo.data.cache.dataset_for`). ``shared_data=None`` always
    uses ``out/data``.
    """
    out = Path(out)
    check_positive_int("jobs", jobs, hint="; e.g. --jobs 2 for two cores")
    _check_unrolls(exp)  # before any folder or dataset is made
    with run_lock(out):
        clean_stale_temp_files(out)
        return _run_locked(
            exp, out, progress=progress, force=force, device=device, shared_data=shared_data, jobs=jobs
        )


def _run_locked(
    exp: Experiment,
    out: Path,
    *,
    progress: bool,
    force: bool,
    device: str,
    shared_data: str | Path | None,
    jobs: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    own = safe_child(out, "data", what="data folder")
    data_path, data = dataset_for(exp.recipe, own, shared_dir=shared_data, progress=progress)
    solver = source_solver(data)  # built once: its capabilities here, its steps in evaluation
    plans, failed = _plan(exp, out, data_path, data, solver)
    _check_reuse(plans, force)
    finished, summaries = _train_all(plans, data, failed, progress=progress, jobs=jobs, data_path=data_path)
    errors, trajectories = _evaluate(exp, data, solver, finished, device=device)
    rows, paired, table, run_records = write_report(exp, out, data, finished, summaries, failed, errors, trajectories)
    record = {
        "preset": exp.name,
        "config": exp,
        "seed": {k: c.seed for k, c in exp.methods.items()},
        "seeds": exp.seeds,
        "versions": environment(),
        "dataset": {  # the data actually used: its file, hash, recipe and adapter code
            "path": str(data_path),
            "hash": data.hash,
            "recipe": data.recipe,
            "code": json.loads(data.attrs["code"]) if isinstance(data.attrs.get("code"), str) else None,
        },
        "runs": run_records,
        "rows": rows,
        "paired": paired,
        "failed": failed,
        "eval_steps": list(exp.horizons),
        "wall_clock_s": time.perf_counter() - t0,
        "table": table,
    }
    write_json(out / "results.json", record)
    return record


def _plan(
    exp: Experiment, out: Path, data_path: Path, data: Dataset, solver: Any
) -> tuple[list[_Plan], dict[str, str]]:
    """Every training run (method x seed) with its folder and hash; ``failed`` holds FO-SOL on a
    non-differentiable solver (``n/a``), which is not planned."""
    labels = exp.labels()
    plans = []
    for key, seed, cfg in exp.runs():
        config = RunConfig(str(data_path), exp.model, cfg)
        plans.append(_Plan(key, seed, labels[key], config, _run_dir(out, key, seed), config_hash(config, data.hash)))
    failed: dict[str, str] = {}
    if not solver.capabilities.differentiable:
        for p in plans:
            if p.config.train.method_spec.differentiable:
                failed[p.label] = f"n/a: solver {exp.recipe.solver!r} is not differentiable"
        plans = [p for p in plans if p.label not in failed]
    return plans, failed


def _train_all(
    plans: list[_Plan], data: Dataset, failed: dict[str, str], *, progress: bool, jobs: int = 1, data_path: Path
) -> tuple[list[_Plan], dict[str, list[dict[str, Any]]]]:
    """Train, resume or reuse every planned run; a method that fails (at any seed) goes into ``failed``.

    With ``jobs > 1`` the runs still to train go to that many worker processes
    (:mod:`sciml_zoo.train.pool`; the same bits as trained here). Returns the
    finished runs of the methods that did not fail and every finished run's
    ``summary.json`` by label, in plan order either way.
    """
    todo = [p for p in plans if p.label not in failed and not (p.dir / "summary.json").is_file()]
    if jobs > 1 and len(todo) > 1:
        runs = [PoolRun(_name(p), p.config, p.dir) for p in todo]
        reasons = train_in_pool(runs, data_path, solver=data.recipe.solver, jobs=jobs, progress=progress)
        for p in todo:
            if reasons[_name(p)] is not None:
                failed.setdefault(p.label, _failure(p, reasons[_name(p)]))
        todo = []
    summaries: dict[str, list[dict[str, Any]]] = {}
    finished: list[_Plan] = []
    for p in plans:
        if p.label in failed:
            continue
        if p in todo:
            try:
                train(p.config, p.dir, resume=(p.dir / "checkpoint.pt").is_file(), progress=progress, data=data)
            except SciMLZooError as exc:
                failed[p.label] = _failure(p, str(exc))
                continue
        summaries.setdefault(p.label, []).append(json.loads((p.dir / "summary.json").read_text()))
        finished.append(p)
    return [p for p in finished if p.label not in failed], summaries


def _name(p: _Plan) -> str:
    return p.key if p.seed is None else f"{p.key} seed {p.seed}"


def _failure(p: _Plan, reason: str | None) -> str:
    at = "" if p.seed is None else f" (seed {p.seed})"
    return f"failed{at}: {reason}"


def _method_labels(finished: list[_Plan]) -> list[str]:
    return ["SRC", *dict.fromkeys(p.label for p in finished)]


def _evaluate(
    exp: Experiment, data: Dataset, solver: Any, finished: list[_Plan], *, device: str
) -> tuple[xr.DataArray, dict[str, Any]]:
    """Per-step test errors ``(seed, method, sim, step)`` of SRC and every finished run up to the
    longest horizon (seed -1 without seeds), and the first seed's trajectories for the field plot."""
    seeds = [None] if exp.seeds is None else list(exp.seeds)
    horizon = max(exp.horizons)
    src, trajectories = evaluate_methods(data, {"SRC": None}, steps=horizon, device=device, solver=solver)
    method_labels = _method_labels(finished)
    per_seed = []
    for seed in seeds:
        runs = {p.label: p.dir for p in finished if p.seed == seed}
        errs, trajs = evaluate_methods(data, runs, steps=horizon, device=device, solver=solver)
        if seed == seeds[0]:
            trajectories.update(trajs)
        per_seed.append(xr.concat([src, errs], dim="method").reindex({"method": method_labels}))
    errors = xr.concat(per_seed, dim=xr.DataArray([-1 if s is None else s for s in seeds], dims="seed", name="seed"))
    return errors, trajectories
