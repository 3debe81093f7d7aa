"""Argument helpers of the CLI: one-line usage errors, the user's solver flags, value checks.

Every check raises :class:`~sciml_zoo.errors.SciMLZooError` (or exits 2 for
argparse's usage errors) with one line naming the flag, the value and the fix.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import torch

from sciml_zoo.config import RunConfig
from sciml_zoo.config_io import load_toml, parse_override
from sciml_zoo.errors import SciMLZooError
from sciml_zoo.experiment import find_recipe, load_run_config
from sciml_zoo.registry import SolverTrust
from sciml_zoo.trust import all_trusted, record_trust

__all__ = [
    "Parser",
    "trust_flags",
    "solver_trust_of",
    "trust_scope",
    "train_run_config",
    "check_writable_dir",
    "check_output_file",
    "device",
    "positive_int",
    "integer",
    "threads",
    "read_summary",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2) like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def trust_flags() -> Parser:
    """Flags by which the user, not a file being opened, decides what code and programs run."""
    t = Parser(add_help=False)
    t.add_argument(
        "--allow-exec",
        action="store_true",
        help="trust the dataset/recipe/preset files opened: their solver may be module:factory or a "
        "script, and their solver options may run programs (external's command, burgers-c's build_dir)",
    )
    t.add_argument(
        "--solver",
        metavar="NAME",
        help="use this solver instead of the one the file names: a registered name, module:factory or "
        "path/to/script.py:factory",
    )
    t.add_argument(
        "--solver-option",
        action="append",
        metavar="KEY=VALUE",
        help='set a solver option (TOML value), e.g. command=\'["./sim", "--fast"]\' (repeatable)',
    )
    return t


def _preset_recipe(preset: str) -> list[Path]:
    """The recipe file a user's preset names (relative to the preset), if any; built-in ones need no trust."""
    try:
        path = Path(preset)
        if not (path.suffix == ".toml" or "/" in preset) or not path.is_file():
            return []
        dataset = load_toml(path).get("dataset")
        return [find_recipe(dataset, named_by=path)] if isinstance(dataset, str) and dataset.endswith(".toml") else []
    except SciMLZooError:  # the command itself reports a bad preset
        return []


def trust_scope(args: argparse.Namespace) -> list[Path]:
    """The user's files this command opens that name a solver (recipes, datasets): what ``--allow-exec`` trusts."""
    files = [getattr(args, "data", None)]
    if args.command == "generate":
        files.append(args.recipe if args.recipe.endswith(".toml") or "/" in args.recipe else None)
    if getattr(args, "preset", None):
        files += _preset_recipe(args.preset)
    return [Path(f) for f in files if f and Path(f).is_file()]


def solver_trust_of(args: argparse.Namespace) -> SolverTrust:
    """The command's :class:`SolverTrust`. ``--allow-exec`` records the files it opens
    (:func:`trust_scope`) as trusted; without it, a command whose files are all
    recorded and unchanged runs as if it were given (and ``args.allow_exec`` says so)."""
    scope = trust_scope(args) if hasattr(args, "allow_exec") else []
    if getattr(args, "allow_exec", False):
        record_trust(scope)
    elif all_trusted(scope):
        args.allow_exec = True
        names = ", ".join(str(p) for p in scope)
        print(f"sciml-zoo: trusting {names}: unchanged since you passed --allow-exec on it", file=sys.stderr)
    options: dict[str, object] = {}
    for text in getattr(args, "solver_option", None) or []:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise SciMLZooError(f"--solver-option {text!r}: write KEY=VALUE with a plain key, e.g. build_dir=/tmp/b")
        options[keys[0]] = value
    return SolverTrust(
        allow_exec=bool(getattr(args, "allow_exec", False)), solver=getattr(args, "solver", None), options=options
    )


# train flags that are shorthands for --set train.KEY=VALUE
_TRAIN_FLAGS = tuple(
    "method estimator unroll iterations batch_size lr optimizer seed device executor workers scheduler_address "
    "timeout_s retries".split()
)


def train_run_config(args: argparse.Namespace) -> RunConfig:
    """The run config of ``sciml-zoo train``: ``--config`` (or ``--preset`` and its method ``--method KEY``),
    ``--data``, the flags and ``--set``."""
    from sciml_zoo.preset_runs import preset_run_config  # generation's modules: only for train

    flags = [k for k in _TRAIN_FLAGS if getattr(args, k) is not None and not (args.preset and k == "method")]
    overrides = [f"train.{k}={getattr(args, k)}" for k in flags] + (args.set or [])
    if not args.preset:
        return load_run_config(args.config, ([f"data={args.data}"] if args.data else []) + overrides)
    if args.config:
        raise SciMLZooError("--config and --preset both give the model and training tables; pass one of them")
    return preset_run_config(args.preset, args.method, overrides, data=args.data, progress=not args.quiet)


def check_writable_dir(folder: Path, what: str) -> None:
    """Create ``folder`` and try a file in it, so an unwritable output is one line before any work."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise SciMLZooError(f"cannot write {what}: {str(blocker)!r} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SciMLZooError(
            f"cannot write {what}: folder {str(folder)!r} is not writable ({exc.strerror or exc}); choose another path"
        ) from None


def device(text: str, flag: str = "--device") -> str:
    """``text`` if it names a torch device that this machine has (``cpu``, ``cuda[:N]``, ``mps``, ``xpu[:N]``)."""
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise SciMLZooError(f"{flag} {text!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return text
    backend = getattr(torch, dev.type, None) if dev.type in ("cuda", "mps", "xpu") else None
    if backend is None:
        raise SciMLZooError(f"{flag} {text!r}: device type {dev.type!r} is not supported; use cpu or cuda")
    if not backend.is_available():
        why = " (this torch was built without CUDA)" if dev.type == "cuda" and torch.version.cuda is None else ""
        raise SciMLZooError(f"{flag} {text!r}: no {dev.type} device is available on this machine{why}; use {flag} cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if dev.index is not None and dev.index >= count:
        raise SciMLZooError(f"{flag} {text!r}: this machine has {count} {dev.type} device(s), 0 to {count - 1}")
    return text


def check_output_file(path: Path, flag: str, *, overwrite: bool, fix: str = "pass --overwrite to replace it") -> None:
    """Refuse an output file before any work: a folder, an existing file (unless ``overwrite``), an unwritable place."""
    if path.is_dir():
        raise SciMLZooError(f"cannot write {flag} {str(path)!r}: it is a folder; give a file path, e.g. {path}/out.nc")
    if path.exists() and not overwrite:
        raise SciMLZooError(f"{flag} {str(path)!r} already exists; {fix}, or choose another path")
    check_writable_dir(path.parent, f"{flag} {str(path)!r}")


def threads(text: str) -> int:
    """argparse type of ``--threads``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}; e.g. --threads 1")
    return value


def positive_int(text: str, flag: str, example: int = 50) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != str(text).strip():
        raise SciMLZooError(f"{flag} must be a positive integer, got {text!r}; e.g. {flag} {example}")
    return value


def integer(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SciMLZooError(f"{flag} must be an integer, got {text!r}; e.g. {flag} 0") from None


def read_summary(path: Path) -> dict:
    """A run's ``summary.json`` (``{}`` if it has none: an unfinished run), refused in one line if corrupt."""
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SciMLZooError(f"{str(path)!r} is corrupt ({exc}); delete it, or retrain the run") from None
    if not isinstance(summary, dict):
        raise SciMLZooError(f"{str(path)!r} is not a run summary (a JSON object); delete it, or retrain the run")
    return summary
