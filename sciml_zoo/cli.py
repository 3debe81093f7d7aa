"""``sciml-zoo``: generate / train / evaluate / compare / report / solvers / diagnose.

Thin wrappers over the library. A user's mistake (a bad config key, a missing
or corrupt file, a solver that produced NaN) prints one line and exits 2; Ctrl-C
saves a checkpoint and exits 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sciml_zoo.cli_args import (
    Parser,
    check_output_file,
    check_writable_dir,
    device,
    integer,
    positive_int,
    read_summary,
    solver_trust_of,
    threads,
    train_run_config,
    trust_flags,
)
from sciml_zoo.errors import SciMLZooError
from sciml_zoo.paths import safe_child
from sciml_zoo.registry import solver_trust
from sciml_zoo.report_cli import add_report_parser
from sciml_zoo.trust import record_trust

__all__ = ["main"]


def _cmd_generate(args: argparse.Namespace) -> None:
    from sciml_zoo.data.generate import generate_dataset, stored_key
    from sciml_zoo.experiment import load_recipe

    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else safe_child("data", recipe.name, what="recipe name", suffix=".h5")
    if out.is_dir():
        raise SciMLZooError(f"--out {str(out)!r} is a folder; give the dataset file, e.g. {out}/{recipe.name}.h5")
    check_writable_dir(out.parent, f"--out {str(out)!r}")
    before = stored_key(out)  # for the message only: generate_dataset decides under the file's lock
    path = generate_dataset(recipe, out, progress=not args.quiet, overwrite=args.overwrite)
    if args.allow_exec:  # made from a trusted recipe: later commands on it need no --allow-exec
        record_trust([path])
    after = stored_key(path)
    if before == after and not args.overwrite:
        print(f"dataset up to date: {path} (hash {after}: same recipe and adapter code; nothing to do)")
    elif before is not None:
        print(
            f"dataset regenerated: {path} (hash {after}; the file held hash {before or 'none'}, "
            "from another recipe or adapter version)"
        )
    else:
        print(f"dataset written: {path} (hash {after})")


def _cmd_train(args: argparse.Namespace) -> None:
    from sciml_zoo.train.loop import train

    config = train_run_config(args)
    device(config.train.device, "--device" if args.device else "train.device")  # one this machine has
    summary = train(config, args.out, resume=args.resume, progress=not args.quiet)
    loss = "n/a" if summary["final_loss"] is None else f"{summary['final_loss']:.4g}"
    print(
        f"{summary['label']}: {summary['iterations_done']} iterations, final loss "
        f"{loss}, {summary['train_solver_steps']:,} solver steps, "
        f"{summary['train_wall_s']:.1f} s -> {args.out}"
    )


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from sciml_zoo.data.loading import load_dataset
    from sciml_zoo.evaluate import default_steps, evaluate_methods
    from sciml_zoo.provenance import atomic_path
    from sciml_zoo.tables import comparison_rows, format_table

    if args.out:  # before any work: the evaluation is not thrown away for a bad --out
        check_output_file(Path(args.out), "--out", overwrite=args.overwrite)
    on = device(args.device)
    steps = None if args.steps is None else positive_int(args.steps, "--steps")
    data = load_dataset(args.data)
    runs: dict[str, str | None] = {"SRC": None}
    summaries: dict[str, list[dict]] = {}
    for run in args.runs:
        summary = read_summary(Path(run) / "summary.json")
        label = summary.get("label", Path(run).name)
        if label in runs:  # two runs of one method: keep both rows apart
            label = f"{label} ({run})"
        runs[label] = run
        summaries[label] = [summary] if summary else []
    steps = default_steps(data) if steps is None else steps
    errors, _ = evaluate_methods(data, runs, steps=steps, device=on)
    print(format_table(comparison_rows(errors, list(runs), summaries)))
    if args.out:
        try:
            with atomic_path(args.out) as tmp:
                errors.to_netcdf(tmp)
        except OSError as exc:
            raise SciMLZooError(
                f"cannot write --out {args.out!r} ({exc.strerror or exc}); choose another path"
            ) from None


def _cmd_compare(args: argparse.Namespace) -> int:
    from sciml_zoo.compare import run_comparison
    from sciml_zoo.experiment import load_experiment

    overrides = list(args.set or []) + ([f"train.device={device(args.device)}"] if args.device else [])
    seeds = None if args.seeds is None else positive_int(args.seeds, "--seeds")
    exp = load_experiment(args.preset, overrides=overrides, only=args.methods, seeds=seeds)
    for key, cfg in exp.methods.items():
        device(cfg.device, "--device" if args.device else f"methods.{key}.device")  # one this machine has
    out = Path(args.out) if args.out else safe_child("results", exp.name, what="preset name (or give --out)")
    t0 = time.perf_counter()
    jobs = positive_int(args.jobs, "--jobs", example=2)
    record = run_comparison(exp, out, progress=not args.quiet, force=args.force, device=args.device or "cpu", jobs=jobs)
    n = "" if exp.seeds is None else f", {len(exp.seeds)} seeds"
    print(f"\n{exp.name}: test MAE over {exp.eval_steps} steps ({len(exp.recipe.test_params)} test sims{n})\n")
    print(record["table"])
    for label, reason in record["failed"].items():
        print(f"{label}: {reason}", file=sys.stderr)
    print(f"\nwall-clock {time.perf_counter() - t0:.0f} s; results in {out}/")
    failed = [label for label, reason in record["failed"].items() if not reason.startswith("n/a")]
    if failed:  # the table of the others is printed and saved; the exit status still says something failed
        print(
            f"sciml-zoo compare: error: {len(failed)} method(s) failed: {', '.join(failed)} (reasons above); "
            "fix them and rerun (finished methods are reused)",
            file=sys.stderr,
        )
        return 2
    return 0


def _cmd_solvers(args: argparse.Namespace) -> None:
    from sciml_zoo.registry import available_solvers, make_solver, required_options

    for name, where in available_solvers().items():
        try:
            needs = required_options(name)
            if needs:  # e.g. external: no defaults to build it with, and that is not an error
                flags = f"needs options: {', '.join(needs)}"
            else:
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
        unroll=positive_int(args.unroll, "--unroll"),
        batch_size=positive_int(args.batch_size, "--batch-size"),
        seed=integer(args.seed, "--seed"),
        repeats=positive_int(args.repeats, "--repeats"),
    )
    print(table)


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="sciml-zoo", description=__doc__.splitlines()[0])
    trust = trust_flags()
    p.add_argument(
        "--threads",
        type=threads,
        default=1,
        help="torch intra-op threads (default 1: the small grids here gain little from more, "
        "and OpenMP spin-waiting makes oversubscribed runs many times slower)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate a reference dataset from a recipe", parents=[trust])
    g.add_argument("recipe", help="a built-in recipe name (e.g. wake_quick) or the path of your .toml")
    g.add_argument("--out", help="output .h5 (default data/<name>.h5)")
    g.add_argument("--overwrite", action="store_true")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=_cmd_generate)

    t = sub.add_parser("train", help="train one correction network", parents=[trust])
    t.add_argument("--config", help="TOML file with [model] and [train] tables (and data = PATH)")
    t.add_argument("--preset", help="train the method --method KEY of this preset (name or .toml), on its dataset")
    t.add_argument("--data", help="dataset .h5")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--method", help="non, fo-sol or zo-sol; with --preset, a key of its [methods]")
    t.add_argument("--estimator")
    t.add_argument("--unroll")
    t.add_argument("--iterations")
    t.add_argument("--batch-size", dest="batch_size")
    t.add_argument("--lr")
    t.add_argument("--optimizer")
    t.add_argument("--seed")
    t.add_argument("--device", help="cpu (default), cuda, cuda:1: where the network and data live")
    t.add_argument("--executor", help="local, process or dask: where black-box queries run")
    t.add_argument("--workers", help="worker processes / Dask workers for the queries")
    t.add_argument("--scheduler", dest="scheduler_address", help="address of a running Dask scheduler")
    t.add_argument("--timeout", dest="timeout_s", help="seconds a solver query may take")
    t.add_argument("--retries", help="retries of a failed solver query")
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config key, nested keys too: train.lr=1e-3, model.width=16, train.estimator_options.mu=1e-3",
    )
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="MAE of SRC and trained runs on the test simulations", parents=[trust])
    e.add_argument("--data", required=True)
    e.add_argument("runs", nargs="*", help="run directories")
    e.add_argument("--steps", help="rollout horizon (default: min(100, test frames - 1))")
    e.add_argument("--device", default="cpu")
    e.add_argument("--out", help="write per-step errors as NetCDF")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    e.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser("compare", help="generate, train every method, evaluate: the full table", parents=[trust])
    c.add_argument("--preset", default="quick", help="quick, paper, or a preset .toml")
    c.add_argument("--out", help="results directory (default results/<preset>)")
    c.add_argument("--methods", nargs="*", help="subset of the preset's method keys")
    c.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override, e.g. train.iterations=50, methods.zo-sol.estimator=identity, "
        "methods.zo-sol.estimator_options.mu=1e-3",
    )
    c.add_argument("--seeds", help="train every method at seeds 0..N-1 (mean ± std, 95%% CI)")
    c.add_argument("--force", action="store_true", help="retrain runs made by another config, dataset or code")
    c.add_argument(
        "--jobs",
        default="1",
        help="runs (method x seed) trained at once, one process each "
        "(default 1; e.g. 2 on two cores: the same results, about half the time)",
    )
    c.add_argument("--device", help="cpu (default) or cuda")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_compare)

    add_report_parser(sub)
    s = sub.add_parser("solvers", help="list installed solver adapters and their capabilities")
    s.set_defaults(func=_cmd_solvers)

    d = sub.add_parser(
        "diagnose", help="compare ZO gradient estimates: fit residuals, agreement, true gradient", parents=[trust]
    )
    d.add_argument("--data", required=True)
    d.add_argument("--run", help="run directory whose weights to use (default: fresh init)")
    d.add_argument("--estimators", nargs="*", help="registry names, e.g. identity stencil banded auto")
    d.add_argument(
        "--estimator-option",
        action="append",
        metavar="NAME.KEY=VALUE",
        help="an estimator option with the config's keys, e.g. stencil.kernel_size=3 (repeatable)",
    )
    d.add_argument("--unroll", default="4")
    d.add_argument("--batch-size", dest="batch_size", default="3")
    d.add_argument("--repeats", default="1")
    d.add_argument("--seed", default="0")
    d.set_defaults(func=_cmd_diagnose)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sciml-zoo`` console script."""
    args = _parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        with solver_trust(solver_trust_of(args)):
            status = args.func(args)  # None: success; an int: the command's own exit status
    except SciMLZooError as exc:
        print(f"sciml-zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        from sciml_zoo.train.interrupts import Interrupted

        print(
            f"sciml-zoo {args.command}: interrupted; progress was saved — rerun the same "
            "command (with --resume for train) to continue",
            file=sys.stderr,
        )
        return 128 + exc.signum if isinstance(exc, Interrupted) else 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
