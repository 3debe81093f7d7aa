"""The Python API for scripts and notebooks: ``import sciml_zoo as sz``.

Four calls, the four CLI commands, with the same files and the same checks::

    path = sz.generate("ks_tiny")                          # data/ks_tiny.h5
    run = sz.train(preset="ks_tiny", method="non", out="runs/non")
    res = sz.evaluate(path, [run])                         # res.errors: xarray (method, sim, step)
    res = sz.compare("ks_tiny", seeds=3)                   # res.mae, print(res)

The trust switch is the CLI's: a file being opened (recipe, dataset, preset)
may name only registered solvers unless ``allow_exec=True`` (``--allow-exec``);
``solver=`` and ``solver_options=`` are ``--solver`` and ``--solver-option``.
Python callers do not read the CLI's trust record (:mod:`sciml_zoo.trust`): a
script says what it trusts. Modules load on first call, so ``import sciml_zoo``
stays light.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sciml_zoo.registry import SolverTrust, solver_trust
from sciml_zoo.solver import Solver

if TYPE_CHECKING:
    import xarray as xr

    from sciml_zoo.config import RunConfig
    from sciml_zoo.data.loading import Dataset
    from sciml_zoo.data.recipe import DatasetRecipe

__all__ = ["Results", "Run", "generate", "train", "evaluate", "compare", "load_dataset", "dataset_solver"]


@dataclass(frozen=True)
class Run:
    """A trained run: its directory (``os.fspath(run)`` works), table label and ``summary.json``."""

    path: Path
    label: str
    summary: dict[str, Any] = field(repr=False)

    def __fspath__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Results:
    """Test errors of several methods, and their table.

    Attributes:
        errors: MAE per method, test simulation and step, ``(method, sim, step)``,
            with a leading ``seed`` axis for a comparison over seeds; every
            physical parameter is a coordinate of ``sim``. Select a method with
            ``errors.sel({"method": "SRC"})``: ``method=`` is a keyword of ``sel`` itself.
        rows: one dict per method (``method``, ``mae``, ``seed_std``, ``ci95``,
            ``per_seed``, ``ratio_to_fo``, ``train_solver_steps``, ...).
        table: the rows as the CLI prints them (markdown); ``str(results)``.
        failed: method label -> why it has no row.
        out: the results folder of a comparison (``results.json``, plots).
    """

    errors: xr.DataArray
    rows: list[dict[str, Any]]
    table: str
    failed: dict[str, str] = field(default_factory=dict)
    out: Path | None = None

    @property
    def mae(self) -> dict[str, float]:
        """Test MAE per method label: the mean over seeds, simulations and steps."""
        return {row["method"]: float(row["mae"]) for row in self.rows}

    @property
    def per_step(self) -> xr.DataArray:
        """Mean error per method and step, ``(method, step)``: how the error grows along the rollout."""
        return self.errors.mean([d for d in self.errors.dims if d not in ("method", "step")])

    def __str__(self) -> str:
        return self.table


@contextmanager
def _trust(allow_exec: bool, solver: str | None, solver_options: Mapping[str, Any] | None) -> Iterator[None]:
    with solver_trust(SolverTrust(allow_exec=allow_exec, solver=solver, options=dict(solver_options or {}))):
        yield


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset file (:class:`~sciml_zoo.data.loading.Dataset`: ``train``, ``test``, ``recipe``...)."""
    from sciml_zoo.data.loading import load_dataset as load

    return load(path)


def dataset_solver(
    data: str | Path | Dataset,
    *,
    allow_exec: bool = False,
    solver: str | None = None,
    solver_options: Mapping[str, Any] | None = None,
) -> Solver:
    """The source (coarse) solver a dataset was made for, built from its recipe, ``resolution`` included.

    The dataset names it, so a ``module:factory`` name needs ``allow_exec=True``;
    its adapter must still be the code that generated the data.
    """
    from sciml_zoo.data.loading import source_solver

    with _trust(allow_exec, solver, solver_options):
        return source_solver(load_dataset(data) if isinstance(data, (str, Path)) else data)


def generate(
    recipe: str | Path | DatasetRecipe,
    out: str | Path | None = None,
    *,
    allow_exec: bool = False,
    solver: str | None = None,
    solver_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Generate a reference dataset (``sciml-zoo generate``); an up-to-date file is reused.

    Args:
        recipe: a built-in recipe name (``"ks_tiny"``), a recipe ``.toml`` path,
            or a :class:`~sciml_zoo.data.recipe.DatasetRecipe`.
        out: the ``.h5`` file (default ``data/<name>.h5``).

    Returns:
        The dataset file.
    """
    from sciml_zoo.data.generate import generate_dataset
    from sciml_zoo.experiment import load_recipe
    from sciml_zoo.paths import safe_child

    if isinstance(recipe, (str, Path)):
        recipe = load_recipe(str(recipe))
    path = Path(out) if out is not None else safe_child("data", recipe.name, what="recipe name", suffix=".h5")
    with _trust(allow_exec, solver, solver_options):
        return generate_dataset(recipe, path, progress=progress, overwrite=overwrite)


def train(
    config: str | Path | RunConfig | None = None,
    *,
    out: str | Path,
    preset: str | None = None,
    method: str | None = None,
    seed: int | None = None,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    allow_exec: bool = False,
    solver: str | None = None,
    solver_options: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> Run:
    """Train one correction network (``sciml-zoo train``).

    Give either ``config`` (a :class:`~sciml_zoo.config.RunConfig` or a TOML file
    with ``[model]``, ``[train]`` and ``data``) or ``preset`` and ``method`` (a
    key of the preset's ``[methods]``; its dataset is generated into ``data/``
    if needed). ``overrides`` are ``--set`` strings (``train.iterations=10``).
    """
    from sciml_zoo.errors import ConfigError
    from sciml_zoo.train.loop import train as train_loop

    with _trust(allow_exec, solver, solver_options):
        if preset is not None:
            if config is not None:
                raise ConfigError("give either config or preset (with method), not both")
            from sciml_zoo.preset_runs import preset_run_config

            run_config = preset_run_config(preset, method, overrides, seed=seed, data=data, progress=progress)
        else:
            run_config = _run_config(config, data=data, seed=seed, overrides=overrides)
        summary = train_loop(run_config, out, resume=resume, progress=progress)
    return Run(Path(out), str(summary.get("label", Path(out).name)), summary)


def _run_config(
    config: str | Path | RunConfig | None, *, data: str | Path | None, seed: int | None, overrides: Sequence[str]
) -> RunConfig:
    from sciml_zoo.config import RunConfig
    from sciml_zoo.errors import ConfigError
    from sciml_zoo.experiment import load_run_config

    extra = [f"data={str(data)!r}"] if data is not None else []
    extra += [f"train.seed={int(seed)}"] if seed is not None else []
    if isinstance(config, RunConfig):
        if extra or overrides:
            raise ConfigError("a RunConfig is complete: change it with dataclasses.replace, not data/seed/overrides")
        return config
    return load_run_config(config, [*extra, *overrides])


def evaluate(
    data: str | Path | Dataset,
    runs: Sequence[str | Path | Run] | Mapping[str, str | Path | Run | None] = (),
    *,
    steps: int | None = None,
    device: str = "cpu",
    allow_exec: bool = False,
    solver: str | None = None,
    solver_options: Mapping[str, Any] | None = None,
) -> Results:
    """Test MAE of SRC (the uncorrected solver) and each run (``sciml-zoo evaluate``).

    Args:
        data: the dataset (path or loaded).
        runs: run directories (labelled by their ``summary.json``) or label -> run.
        steps: rollout horizon (default ``min(100, test frames - 1)``).
    """
    from sciml_zoo.cli_args import read_summary
    from sciml_zoo.evaluate import default_steps, evaluate_methods
    from sciml_zoo.tables import comparison_rows, format_table

    dataset = load_dataset(data) if isinstance(data, (str, Path)) else data
    named: dict[str, str | Path | None] = {"SRC": None}
    summaries: dict[str, list[dict[str, Any]]] = {}
    items = runs.items() if isinstance(runs, Mapping) else [(None, r) for r in runs]
    for label, run in items:
        if run is None:
            named[label or "SRC"] = None
            continue
        summary = read_summary(Path(run) / "summary.json")
        name = label or str(summary.get("label", Path(run).name))
        name = name if name not in named else f"{name} ({run})"  # two runs of one method: both rows
        named[name] = Path(run)
        summaries[name] = [summary] if summary else []
    with _trust(allow_exec, solver, solver_options):
        horizon = default_steps(dataset) if steps is None else steps
        errors, _ = evaluate_methods(dataset, named, steps=horizon, device=device)
    rows = comparison_rows(errors, list(named), summaries)
    return Results(errors, rows, format_table(rows))


def compare(
    preset: str | Path,
    seeds: int | None = 3,
    methods: Sequence[str] | None = None,
    out: str | Path | None = None,
    *,
    allow_exec: bool = False,
    overrides: Sequence[str] = (),
    force: bool = False,
    device: str = "cpu",
    progress: bool = False,
    solver: str | None = None,
    solver_options: Mapping[str, Any] | None = None,
    jobs: int = 1,
) -> Results:
    """Generate, train every method at ``seeds`` seeds and evaluate (``sciml-zoo compare``).

    ``seeds=None`` keeps the preset's own ``seeds``; ``out`` defaults to
    ``results/<preset>``; finished runs there are reused when their hash matches.
    ``jobs`` runs train at once in worker processes (``--jobs``; a script that
    registers solvers must then run its work under ``if __name__ == "__main__":``).
    """
    import xarray as xr

    from sciml_zoo.compare import run_comparison
    from sciml_zoo.experiment import load_experiment
    from sciml_zoo.paths import safe_child

    with _trust(allow_exec, solver, solver_options):
        exp = load_experiment(str(preset), overrides=overrides, only=list(methods) if methods else None, seeds=seeds)
        folder = Path(out) if out is not None else safe_child("results", exp.name, what="preset name")
        record = run_comparison(exp, folder, progress=progress, force=force, device=device, jobs=jobs)
    with xr.open_dataset(folder / "errors.nc") as ds:
        errors = ds["mae"].load()
    return Results(errors, record["rows"], record["table"], dict(record["failed"]), folder)
