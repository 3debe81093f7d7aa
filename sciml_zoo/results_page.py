"""``docs/results.md`` and the README's headline, rendered from committed result records.

Every number on the page comes from a record of :mod:`sciml_zoo.records`
through the same functions ``compare`` prints its table with
(:func:`~sciml_zoo.tables.comparison_rows`, :func:`~sciml_zoo.tables.paired_rows`):
the per-seed MAEs become a ``(seed, method, sim, step)`` array of one
simulation and one step, whose means over simulations and steps are the
recorded values themselves. The output depends only on the records and the
links given (records sorted by file name), so regenerating it is a test.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sciml_zoo.records import record_seeds
from sciml_zoo.tables import comparison_rows, format_paired, format_table, paired_rows

__all__ = ["record_table", "render_page", "fill_headlines", "HEADLINE"]

HEADLINE = re.compile(r"(<!-- headline: (?P<path>[^\s>]+) -->\n)(?P<body>.*?)(<!-- /headline -->)", re.DOTALL)
"""A README block filled from a record: ``<!-- headline: docs/results/NAME.json -->`` ... ``<!-- /headline -->``."""

_PAIRED_MIN_SEEDS = 3


def _errors(record: dict[str, Any]) -> xr.DataArray:
    """Per-seed MAEs as errors ``(seed, method, sim=1, step=1)`` (``null`` -> NaN)."""
    values = [[math.nan if v is None else v for v in record["mae"][m]] for m in record["methods"]]
    data = np.asarray(values, dtype=float).T[:, :, None, None]
    coords = {"seed": record_seeds(record), "method": record["methods"], "sim": [0], "step": [1]}
    return xr.DataArray(data, dims=("seed", "method", "sim", "step"), coords=coords)


def record_table(record: dict[str, Any], *, paired: bool = True) -> str:
    """The record's table as ``compare`` prints it; with ``paired``, the paired table from 3 seeds on."""
    errors = _errors(record)
    runs = {m: record["train"].get(m, []) for m in record["methods"]}
    rows = comparison_rows(errors, record["methods"], runs)
    for r in rows:  # one simulation here: the std over simulations is the recorded one
        std = record["sim_std"].get(r["method"])
        r["mae_std"] = math.nan if std is None else std
    table = format_table(rows, record["failed"])
    if paired and len(record_seeds(record)) >= _PAIRED_MIN_SEEDS:
        table = "\n\n".join(t for t in (table, format_paired(paired_rows(errors, record["methods"]))) if t)
    return table


def _per_seed(record: dict[str, Any]) -> str:
    seeds = record_seeds(record)
    head = " | ".join("the preset's seed" if s == -1 else f"seed {s}" for s in seeds)
    lines = [f"| method | {head} |", "|---|" + "---|" * len(seeds)]
    for m in record["methods"]:
        cells = " | ".join("–" if v is None else f"{v:.4f}" for v in record["mae"][m])
        lines.append(f"| {m} | {cells} |")
    return "\n".join(lines)


def _facts(name: str, record: dict[str, Any], records_link: str) -> str:
    seeds = record_seeds(record)
    seed_text = "one seed (the preset's)" if seeds == [-1] else f"seeds {', '.join(map(str, seeds))}"
    versions = record["versions"]
    packages = versions.get("packages") if isinstance(versions.get("packages"), dict) else {}
    installed = ", ".join(f"{k} {v}" for k, v in sorted(packages.items()) if isinstance(v, str))
    wall = record.get("wall_clock_s")
    parts = [
        f"record [`{name}`]({records_link}/{name})",
        f"preset `{record['preset']}`",
        f"{record['test_sims']} test simulations, {record['eval_steps']} steps",
        seed_text,
        f"dataset hash `{record['dataset'].get('hash')}`",
        f"Python {versions.get('python')}, {installed}",
        f"on {versions.get('platform')}",
    ]
    if wall is not None:
        parts.append(f"the comparison took {wall:.0f} s")
    return " · ".join(str(p) for p in parts)


def figure_name(name: str) -> str:
    """The cost-accuracy figure of record ``name`` (``quick.json`` -> ``quick.png``)."""
    return f"{Path(name).stem}.png"


def _section(name: str, record: dict[str, Any], records_link: str, figures_link: str | None) -> str:
    out = [f"## {record['title']}", "", _facts(name, record, records_link), "", "```bash", record["command"], "```"]
    if record["description"]:
        out += ["", record["description"]]
    out += ["", record_table(record), "", "Test MAE per seed:", "", _per_seed(record)]
    if figures_link is not None and record.get("train"):
        out += ["", f"![{record['title']}: test MAE against training cost]({figures_link}/{figure_name(name)})"]
    return "\n".join(out)


def render_page(
    records: dict[str, dict[str, Any]],
    *,
    records_link: str,
    records_dir: str,
    command: str,
    figures_link: str | None = None,
) -> str:
    """The results page: a short guide, then one section per record (in the order of their file names).

    Args:
        records: record file name -> record (:func:`~sciml_zoo.records.read_records`).
        records_link: the records folder relative to the page's folder (e.g. ``results``).
        records_dir: the records folder as the commands quoted on the page name it (``docs/results``).
        command: the command that regenerates the page, quoted on it.
        figures_link: the folder of the records' cost-accuracy figures relative
            to the page's folder (each section links its own); None: no figures.
    """
    head = [
        "# Results",
        "",
        f"<!-- generated by `{command}` from the records in {records_link}/; do not edit by hand -->",
        "",
        f"Every table here is generated from one committed record in [`{records_link}/`]({records_link}/) "
        f"by `{command}`; the test suite regenerates this page and compares it with the committed file, "
        "so a number here is the number in its record. A record is the reduced `results.json` of one "
        "`sciml-zoo compare`: its command, config, dataset hash, versions and per-seed test MAE and "
        "training cost of every method (`sciml-zoo report --record results/<preset>/results.json "
        f"--out {records_dir}/<name>.json` writes one).",
        "",
        "How to read a table: test MAE is the mean absolute error against the high-resolution reference "
        "over the first steps of every test simulation, rolled out from its first frame. With several "
        'seeds, ± is the std over seeds, the 95% interval is Student-t, and "/ FO-SOL" is the mean ± std '
        "of the per-seed ratios. From 3 seeds on, methods are also compared seed by seed (paired). "
        "Training wall-clock depends on the machine and on what else ran on it: compare it within a "
        "table, not across tables.",
    ]
    if not records:
        head += ["", "No records yet."]
    sections = [_section(name, rec, records_link, figures_link) for name, rec in sorted(records.items())]
    return "\n\n".join(["\n".join(head), *sections]) + "\n"


def _headline(name: str, record: dict[str, Any] | None, page_link: str, path: str) -> str:
    if record is None:
        return (
            f"*Placeholder: this table is generated from `{path}` once that record is committed "
            f"(see [{page_link}]({page_link})).*\n"
        )
    seeds = record_seeds(record)
    n = "one seed" if seeds == [-1] else f"{len(seeds)} seeds"
    wall = record.get("wall_clock_s")
    n += "" if wall is None else f"; the comparison took {wall:.0f} s"
    return (
        f"{record['title']} ({record['test_sims']} test simulations, {n}), from the committed record "
        f"[`{path}`]({path}) of `{record['command']}`:\n\n{record_table(record, paired=False)}\n\n"
        f"Paired comparisons, per-seed values, versions and every other table: [{page_link}]({page_link}).\n"
    )


def fill_headlines(text: str, records: dict[str, dict[str, Any]], *, page_link: str) -> str:
    """``text`` (a README) with every headline block filled from the record it names.

    Only the file name of the marker's path is used, and only to pick one of
    ``records`` (already read from the records folder): nothing in the README
    becomes a path. A block whose record is missing gets a placeholder line.
    """

    def fill(match: re.Match[str]) -> str:
        path = match["path"]
        name = path.rsplit("/", 1)[-1]
        body = _headline(name, records.get(name), page_link, path)
        return f"{match[1]}\n{body}\n{match[4]}"

    return HEADLINE.sub(fill, text)
