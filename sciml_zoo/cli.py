"""``sciml-zoo``: generate / train / evaluate / compare / solvers / diagnose.

Thin wrappers over the library. A user's mistake (a bad config key, a missing
or corrupt file, a solver that produced NaN) prints one line and exits 2; Ctrl-C
saves a checkpoint and exits 130.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sciml_zoo.errors import SciMLZooError

__all__ = ["main"]


def _cmd_generate(args: argparse.Namespace) -> None:
    from sciml_zoo.data.generate import generate_dataset
    from sciml_zoo.experiment import load_recipe

    recipe = load_recipe(args.recipe)
    out = Path(args.out or f"data/{recipe.name}.h5")
    path = generate_dataset(recipe, out, progress=not args.quiet, overwrite=args.overwrite)
    print(f"dataset written: {path}")


def _cmd_train(args: argparse.Namespace) -> None:
    from sciml_zoo.config_io import from_dict, load_toml, parse_override
    from sciml_zoo.train.config import ModelConfig, TrainConfig
    from sciml_zoo.train.loop import RunConfig, train

    raw = load_toml(args.config) if args.config else {}
    unknown = sorted(set(raw) - {"model", "train", "data"})
    if unknown:
        raise SciMLZooError(f"unknown table(s) {unknown} in {args.config}; valid: [model], [train], data")
    train_raw = dict(raw.get("train", {}))
    for flag in (
        "method",
        "estimator",
        "unroll",
        "iterations",
        "lr",
        "seed",
        "batch_size",
        "optimizer",
    ):
        if getattr(args, flag) is not None:
            train_raw[flag] = getattr(args, flag)
    model_raw = dict(raw.get("model", {}))
    for text in args.set or []:
        keys, value = parse_override(text)
        target = {"train": train_raw, "model": model_raw}.get(keys[0])
        if target is None or len(keys) != 2:
            raise SciMLZooError(f"--set {text!r}: use train.KEY=VALUE or model.KEY=VALUE")
        target[keys[1]] = value
    data = args.data or raw.get("data")
    if not data:
        raise SciMLZooError("no dataset given; pass --data PATH.h5 (made by `sciml-zoo generate`)")
    config = RunConfig(
        str(data),
        from_dict(ModelConfig, model_raw, where="[model]"),
        from_dict(TrainConfig, train_raw, where="[train]"),
    )
    summary = train(config, args.out, resume=args.resume, progress=not args.quiet)
    print(
        f"{summary['label']}: {summary['iterations_done']} iterations, final loss "
        f"{summary['final_loss']:.4g}, {summary['train_solver_steps']:,} solver steps, "
        f"{summary['train_wall_s']:.1f} s -> {args.out}"
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from sciml_zoo.compare import comparison_rows, format_table
    from sciml_zoo.evaluate import evaluate_methods
    from sciml_zoo.metrics import summarize
    from sciml_zoo.train.loop import load_training_data

    data = load_training_data(args.data)
    runs: dict[str, str | None] = {"SRC": None}
    for run in args.runs:
        summary_path = Path(run) / "summary.json"
        label = json.loads(summary_path.read_text())["label"] if summary_path.is_file() else Path(run).name
        runs[label] = run
    errors, _ = evaluate_methods(data, runs, steps=args.steps)
    stats = summarize(errors)
    rows = comparison_rows(stats, list(runs))
    print(format_table(rows))
    if args.out:
        from sciml_zoo.provenance import atomic_path

        with atomic_path(args.out) as tmp:
            errors.to_netcdf(tmp)


def _cmd_compare(args: argparse.Namespace) -> None:
    from sciml_zoo.compare import run_comparison
    from sciml_zoo.experiment import load_experiment

    exp = load_experiment(args.preset, overrides=args.set or [], only=args.methods)
    out = Path(args.out or f"results/{exp.name}")
    t0 = time.perf_counter()
    record = run_comparison(exp, out, progress=not args.quiet)
    print(f"\n{exp.name}: test MAE over {exp.eval_steps} steps ({len(exp.recipe.test_params)} test sims)\n")
    print(record["table"])
    print(f"\nwall-clock {time.perf_counter() - t0:.0f} s; results in {out}/")


def _cmd_solvers(args: argparse.Namespace) -> None:
    from sciml_zoo.registry import available_solvers, make_solver

    for name, where in available_solvers().items():
        try:
            caps = make_solver(name).capabilities
            flags = f"differentiable={caps.differentiable} batched={caps.batched}"
        except Exception as exc:  # report, don't crash the listing
            flags = f"unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
        print(f"{name:22s} {flags:42s} {where}")


def _cmd_diagnose(args: argparse.Namespace) -> None:
    from sciml_zoo.diagnostics import run_diagnostics

    table = run_diagnostics(
        args.data,
        run=args.run,
        estimators=args.estimators,
        estimator_options=args.estimator_option or [],
        unroll=args.unroll,
        batch_size=args.batch_size,
        seed=args.seed,
        repeats=args.repeats,
    )
    print(table)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sciml-zoo", description=__doc__.splitlines()[0])
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the small grids here gain little from more, "
        "and OpenMP spin-waiting makes oversubscribed runs many times slower)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate a reference dataset from a recipe")
    g.add_argument("recipe", help="recipe name in datasets/ (e.g. wake_quick) or a .toml path")
    g.add_argument("--out", help="output .h5 (default data/<name>.h5)")
    g.add_argument("--overwrite", action="store_true")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_cmd_generate)

    t = sub.add_parser("train", help="train one correction network")
    t.add_argument("--config", help="TOML file with [model] and [train] tables")
    t.add_argument("--data", help="dataset .h5")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--method", choices=["non", "fo-sol", "zo-sol"])
    t.add_argument("--estimator")
    t.add_argument("--unroll", type=int)
    t.add_argument("--iterations", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer")
    t.add_argument("--seed", type=int)
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="MAE of SRC and trained runs on the test simulations")
    e.add_argument("--data", required=True)
    e.add_argument("runs", nargs="*", help="run directories")
    e.add_argument("--steps", type=int, default=100)
    e.add_argument("--out", help="write per-step errors as NetCDF")
    e.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("compare", help="generate, train every method, evaluate: the full table")
    c.add_argument("--preset", default="quick", help="quick, paper, or a preset .toml")
    c.add_argument("--out", help="results directory (default results/<preset>)")
    c.add_argument("--methods", nargs="*", help="subset of the preset's method keys")
    c.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override, e.g. train.iterations=50 or methods.zo-sol.estimator=identity",
    )
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_compare)

    s = sub.add_parser("solvers", help="list installed solver adapters and their capabilities")
    s.set_defaults(func=_cmd_solvers)

    d = sub.add_parser("diagnose", help="compare ZO gradient estimates: fit residuals, agreement, true gradient")
    d.add_argument("--data", required=True)
    d.add_argument("--run", help="run directory whose weights to use (default: fresh init)")
    d.add_argument("--estimators", nargs="*", help="registry names, e.g. identity stencil banded auto")
    d.add_argument(
        "--estimator-option",
        action="append",
        metavar="NAME.KEY=VALUE",
        help="an estimator option with the config's keys, e.g. stencil.kernel_size=3 (repeatable)",
    )
    d.add_argument("--unroll", type=int, default=4)
    d.add_argument("--batch-size", dest="batch_size", type=int, default=3)
    d.add_argument("--repeats", type=int, default=1)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_cmd_diagnose)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sciml-zoo`` console script."""
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        args.func(args)
    except SciMLZooError as exc:
        print(f"sciml-zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"sciml-zoo {args.command}: interrupted; progress was saved — rerun the same "
            "command (with --resume for train) to continue",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
