"""``sciml-zoo report``: reduce a comparison to a committed record; regenerate the results page from records.

Two forms::

    sciml-zoo report --record results/quick/results.json --out docs/results/quick.json
    sciml-zoo report docs/results/ --out docs/results.md [--readme README.md] [--check]

The first writes the compact record (:mod:`sciml_zoo.records`) of one
``compare`` output. The command that produced it is the one given with
``--command``, or, when ``results.json``'s config is exactly what a built-in
preset gives (``sciml-zoo compare --preset NAME [--seeds N]``), that command.
The second renders every record of the folder into the page (and the README's
headline blocks); ``--check`` writes nothing and fails if a file differs.
The renderers are imported only when the subcommand runs: this module is
imported whenever ``sciml-zoo`` builds its parser.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from sciml_zoo.errors import ConfigError, SciMLZooError

__all__ = ["add_report_parser", "run_report", "preset_command"]


def add_report_parser(sub: Any) -> None:
    """Add the ``report`` subcommand to ``sciml-zoo``'s subparsers."""
    r = sub.add_parser(
        "report",
        help="results.json -> a committed record (--record); records folder -> docs/results.md and README headline",
    )
    r.add_argument("records", nargs="?", help="folder of record .json files (e.g. docs/results/)")
    r.add_argument("--record", metavar="RESULTS_JSON", help="reduce this compare results.json into a record")
    r.add_argument("--out", help="the record .json (with --record) or the results page .md (default docs/results.md)")
    r.add_argument(
        "--command", dest="record_command", metavar="COMMAND", help="with --record: the command that made the results"
    )
    r.add_argument("--title", help="with --record: the section title")
    r.add_argument("--readme", help="also fill this README's <!-- headline: ... --> blocks from the records")
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file differs")
    r.set_defaults(func=run_report)


def preset_command(results: dict[str, Any]) -> str | None:
    """``sciml-zoo compare --preset NAME [--seeds N]`` if it gives exactly the config ``results`` records."""
    from sciml_zoo.experiment import PRESET_DIR, load_experiment
    from sciml_zoo.provenance import to_jsonable

    name, seeds = results.get("preset"), results.get("seeds")
    if not isinstance(name, str) or name not in {p.stem for p in PRESET_DIR.glob("*.toml")}:
        return None  # only a built-in preset's name, never a path from the file
    candidates: list[int | None] = [None]
    if isinstance(seeds, list) and seeds == list(range(len(seeds))):
        candidates.append(len(seeds))
    for n in candidates:
        try:
            exp = load_experiment(name, seeds=n)
        except SciMLZooError:
            return None
        if json.loads(json.dumps(to_jsonable(exp))) == results.get("config"):
            return f"sciml-zoo compare --preset {name}" + ("" if n is None else f" --seeds {n}")
    return None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r} ({exc})") from None


def _write(path: Path, text: str, check: bool) -> bool:
    """Write ``text`` (or with ``check`` compare it); return whether the file was already up to date."""
    from sciml_zoo.provenance import atomic_path

    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old == text:
        print(f"{path}: up to date")
        return True
    if check:
        print(f"{path}: differs from what the records give; run the same command without --check")
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"{path}: written")
    return False


def _rel(path: str | Path) -> str:
    """``path`` relative to the working directory, with ``/``: the same text wherever the checkout lies."""
    return Path(os.path.relpath(Path(path).resolve())).as_posix()


def _reduce(args: argparse.Namespace) -> int:
    from sciml_zoo.records import reduce_results

    if not args.out:
        raise ConfigError("--record needs --out, e.g. --out docs/results/quick.json")
    results = _read_json(Path(args.record), "results file")
    command = args.record_command or (preset_command(results) if isinstance(results, dict) else None)
    if command is None:
        raise ConfigError(
            f"{args.record} is not exactly a built-in preset's comparison (overrides, a method subset or a changed "
            "preset); pass the command that produced it with --command 'sciml-zoo compare ...'"
        )
    record = reduce_results(results, command=command, title=args.title)
    text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"
    return 0 if _write(Path(args.out), text, args.check) or not args.check else 1


def _render(args: argparse.Namespace) -> int:
    from sciml_zoo.records import read_records
    from sciml_zoo.results_page import fill_headlines, render_page

    folder = Path(args.records)
    page = Path(args.out or "docs/results.md")
    records = read_records(folder)
    link = Path(os.path.relpath(folder.resolve(), page.resolve().parent)).as_posix()
    command = f"sciml-zoo report {_rel(folder)}/ --out {_rel(page)}"  # the same page with or without --readme
    figures = page.parent / "figures" / "records"
    figures_link = Path(os.path.relpath(figures.resolve(), page.resolve().parent)).as_posix()
    text = render_page(records, records_link=link, records_dir=_rel(folder), command=command, figures_link=figures_link)
    drawn = _figures(records, figures, args.check)
    ok = _write(page, text, args.check) and drawn
    if args.readme:
        readme = Path(args.readme)
        if not readme.is_file():
            raise ConfigError(f"--readme {args.readme!r} is not a file")
        page_link = Path(os.path.relpath(page.resolve(), readme.resolve().parent)).as_posix()
        text = fill_headlines(readme.read_text(encoding="utf-8"), records, page_link=page_link)
        ok = _write(readme, text, args.check) and ok
    return 0 if ok or not args.check else 1


def _figures(records: dict[str, dict[str, Any]], folder: Path, check: bool) -> bool:
    """Draw every record's cost-accuracy figure into ``folder`` (with ``check``: only that each exists).

    PNG bytes depend on the matplotlib version, so ``--check`` (and the test
    suite) require the figures to exist; the numbers they show come from the
    records, redrawn by every run of the command.
    """
    from sciml_zoo.figures import plot_cost_accuracy, record_points
    from sciml_zoo.results_page import figure_name

    ok, drawn = True, 0
    for name, record in sorted(records.items()):
        path = folder / figure_name(name)
        points = record_points(record)
        if not points:
            continue
        if check:
            if not path.is_file():
                print(f"{path}: missing; run the same command without --check")
                ok = False
            continue
        folder.mkdir(parents=True, exist_ok=True)
        plot_cost_accuracy(points, path, title=record["title"])
        drawn += 1
    if not check:
        print(f"{folder}/: {drawn} figures drawn")
    return ok


def run_report(args: argparse.Namespace) -> int:
    """The ``report`` subcommand: ``--record`` reduces, a records folder renders."""
    if bool(args.record) == bool(args.records):
        raise ConfigError("give either --record RESULTS_JSON (to write a record) or a records folder (to render)")
    return _reduce(args) if args.record else _render(args)
