"""Argument helpers of the CLI: one-line usage errors, the user's solver flags, value checks.

Every check raises :class:`~sciml_zoo.errors.SciMLZooError` (or exits 2 for
argparse's usage errors) with one line naming the flag, the value and the fix.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import NoReturn

import torch

from sciml_zoo.config_io import parse_override
from sciml_zoo.errors import SciMLZooError
from sciml_zoo.registry import SolverTrust

__all__ = [
    "Parser",
    "trust_flags",
    "solver_trust_of",
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


def solver_trust_of(args: argparse.Namespace) -> SolverTrust:
    options: dict[str, object] = {}
    for text in getattr(args, "solver_option", None) or []:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise SciMLZooError(f"--solver-option {text!r}: write KEY=VALUE with a plain key, e.g. build_dir=/tmp/b")
        options[keys[0]] = value
    return SolverTrust(
        allow_exec=bool(getattr(args, "allow_exec", False)), solver=getattr(args, "solver", None), options=options
    )


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


def positive_int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != str(text).strip():
        raise SciMLZooError(f"{flag} must be a positive integer, got {text!r}; e.g. {flag} 50")
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
