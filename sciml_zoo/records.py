"""Compact result records: one JSON file per reported table, the only source of a number in the docs.

``compare`` writes ``results.json`` (every run's full config, paths, the
table's text). :func:`reduce_results` keeps what a reader needs to trust and
regenerate one table, and :func:`read_record` reads it back as data only (no
code runs, no name becomes a path). ``docs/results.md`` and the README's
headline are rendered from these records by :mod:`sciml_zoo.results_page`.

A record (``"format": "sciml-zoo record 1"``) holds:

- ``title``, ``command`` (the command line that produced the results),
  ``preset``, ``description``, ``eval_steps``, ``test_sims``;
- ``seeds``: the list of seeds, or ``null`` for a one-seed comparison;
- ``methods``: the table's row labels in order (``SRC`` first);
- ``mae``: per method, the test MAE at each seed (mean over test simulations
  and the first ``eval_steps`` steps), in the order of ``seeds``; ``null``
  where it was not finite;
- ``sim_std``: per method, the std over test simulations (mean over seeds);
- ``train``: per method, one entry per training run: ``seed``, ``hash``,
  ``train_solver_steps``, ``train_wall_s``, ``faults``;
- ``failed``: method label -> reason (``n/a``, diverged, ...);
- ``dataset``: ``hash``, ``recipe`` (its name), ``code`` (the adapter's
  fingerprint); ``versions`` (Python, platform, packages); ``config`` (the
  whole preset, with every method's config); ``wall_clock_s`` of the command.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from sciml_zoo.errors import ConfigError

__all__ = ["FORMAT", "reduce_results", "read_record", "read_records", "record_seeds"]

FORMAT = "sciml-zoo record 1"
_LINE = re.compile(r"[^\x00-\x1f\x7f`|]*")  # one line, no code fence or table separator
_RUN_KEYS = ("train_solver_steps", "train_wall_s")


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def reduce_results(results: dict[str, Any], *, command: str | None = None, title: str | None = None) -> dict[str, Any]:
    """The record of one ``compare`` output (``results.json`` as read), see the module docstring.

    Args:
        results: the parsed ``results.json``.
        command: the command line that produced it; default: the one
            ``results.json`` records (``compare`` writes it).
        title: the section title; default: ``"<preset>: test MAE over <n> steps"``.

    Raises:
        ConfigError: ``results`` is not a ``compare`` output, or neither it nor
            ``command`` says which command produced it.
    """
    where = "results.json"
    if not isinstance(results, dict):
        raise ConfigError(f"{where}: not a JSON object; give the results.json that sciml-zoo compare wrote")
    rows = _need(results, "rows", list, where)
    config = _need(results, "config", dict, where)
    command = command or results.get("command")
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"{where} does not record the command that produced it; pass --command 'sciml-zoo ...'")
    seeds = results.get("seeds")
    methods = [str(_need(r, "method", str, where)) for r in rows]
    train: dict[str, list[dict[str, Any]]] = {m: [] for m in methods if m != "SRC"}
    for run in _need(results, "runs", list, where):
        if run.get("method") in train:
            entry = {"seed": run.get("seed"), "hash": run.get("hash")}
            entry |= {k: _finite(run.get(k)) for k in _RUN_KEYS}
            entry["faults"] = {k: v for k, v in (run.get("faults") or {}).items() if _finite(v) is not None}
            train[run["method"]].append(entry)
    dataset = results.get("dataset") or {}
    recipe = config.get("recipe") or {}
    eval_steps = config.get("eval_steps")
    name = str(results.get("preset", config.get("name", "?")))
    record = {
        "format": FORMAT,
        "title": title or f"{name}: test MAE over {eval_steps} steps",
        "command": " ".join(command.split()),
        "preset": name,
        "description": " ".join(str(config.get("description") or "").split()),
        "eval_steps": eval_steps,
        "test_sims": len(recipe.get("test_params") or []),
        "seeds": list(seeds) if seeds is not None else None,
        "methods": methods,
        "mae": {r["method"]: [_finite(v) for v in r.get("per_seed", [])] for r in rows},
        "sim_std": {r["method"]: _finite(r.get("mae_std")) for r in rows},
        "train": train,
        "failed": {str(k): " ".join(str(v).split()) for k, v in (results.get("failed") or {}).items()},
        "dataset": {"hash": dataset.get("hash"), "recipe": recipe.get("name"), "code": dataset.get("code")},
        "versions": results.get("versions"),
        "config": config,
        "wall_clock_s": _finite(results.get("wall_clock_s")),
    }
    check_record(record, where="the reduced record")
    return record


def record_seeds(record: dict[str, Any]) -> list[int]:
    """The seed coordinate of the record's per-seed values (``[-1]`` for a one-seed comparison)."""
    return [-1] if record["seeds"] is None else list(record["seeds"])


def _text(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not _LINE.fullmatch(value):
        raise ConfigError(f"{where}: {key} {str(value)[:60]!r} must be one line of text without '`' or '|'")
    return value


def check_record(record: Any, *, where: str) -> dict[str, Any]:
    """Check the shape of a record read as JSON; raise :class:`ConfigError` naming the bad key."""
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ConfigError(f"{where}: not a sciml-zoo record (its 'format' must be {FORMAT!r})")
    for key in ("title", "command", "preset", "description"):
        _text(record.get(key), key, where)
    for key in ("eval_steps", "test_sims"):
        if not isinstance(record.get(key), int) or isinstance(record.get(key), bool):
            raise ConfigError(f"{where}: {key!r} must be an integer")
    seeds = record.get("seeds")
    if seeds is not None and (
        not isinstance(seeds, list)
        or not seeds
        or not all(type(s) is int for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise ConfigError(f"{where}: 'seeds' must be null or a list of distinct integers")
    methods = _need(record, "methods", list, where)
    for m in methods:
        _text(m, "method", where)
    if len(set(methods)) < len(methods):
        raise ConfigError(f"{where}: 'methods' repeats a label")
    n = 1 if seeds is None else len(seeds)
    mae, sim_std = _need(record, "mae", dict, where), _need(record, "sim_std", dict, where)
    train = _need(record, "train", dict, where)
    for m in methods:
        values = mae.get(m)
        if not isinstance(values, list) or len(values) != n or not all(_number_or_null(v) for v in values):
            raise ConfigError(f"{where}: mae[{m!r}] must list {n} numbers (or null), one per seed")
        if not _number_or_null(sim_std.get(m)):
            raise ConfigError(f"{where}: sim_std[{m!r}] must be a number or null")
        for run in train.get(m, []):
            ok = isinstance(run, dict) and all(_number_or_null(run.get(k)) for k in _RUN_KEYS)
            faults = run.get("faults") if isinstance(run, dict) else None
            if not ok or not isinstance(faults, dict) or not all(_number_or_null(v) for v in faults.values()):
                raise ConfigError(f"{where}: train[{m!r}] entries need numeric {', '.join(_RUN_KEYS)} and faults")
    for label, reason in _need(record, "failed", dict, where).items():
        _text(label, "failed method", where), _text(reason, "failure reason", where)
    if not isinstance(record.get("dataset"), dict) or not isinstance(record.get("versions"), dict):
        raise ConfigError(f"{where}: 'dataset' and 'versions' must be objects")
    return record


def _number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_record(path: Path) -> dict[str, Any]:
    """One record file, parsed as strict JSON (no NaN) and checked; never executed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"cannot read record {str(path)!r} ({exc}); regenerate it with sciml-zoo report --record"
        ) from None
    return check_record(data, where=f"record {str(path)!r}")


def read_records(folder: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` record in ``folder`` (not its subfolders, no symlinks), by file name, sorted by name."""
    if not folder.is_dir():
        raise ConfigError(f"records folder {str(folder)!r} does not exist; give the folder of record .json files")
    files = sorted(
        p for p in folder.glob("*.json") if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    )
    return {p.name: read_record(p) for p in files}
