"""Trust given once: a record of the files the user opened with ``--allow-exec``.

A file being opened may name only registered solvers and set no option that
runs a program (:func:`~sciml_zoo.registry.make_solver_from_file`), unless the
user passes ``--allow-exec``. Repeating the flag on every command that opens
the same file teaches users to pass it blindly, so the CLI remembers it: when a
command runs with ``--allow-exec``, the SHA-256 of each file it opens that names
a solver (a recipe, a dataset) is recorded together with the file's resolved
path; a later command that opens only recorded files, unchanged and at the same
place, is trusted without the flag. A changed, moved or new file is untrusted
again; the default stays safe.

The record is one JSON object, ``{sha256: {"paths": [...], "trusted_at": ...}}``,
at ``$SCIML_ZOO_TRUST_FILE``, else ``$XDG_CONFIG_HOME/sciml-zoo/trusted.json``
(``~/.config/sciml-zoo/trusted.json``). It is written atomically under a lock;
an unreadable or malformed record trusts nothing (and is replaced on the next
write). Python callers pass ``allow_exec=True`` instead; they do not read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sciml_zoo.paths import file_lock
from sciml_zoo.provenance import atomic_path

__all__ = ["TRUST_FILE_ENV", "trust_file", "file_digest", "is_trusted", "all_trusted", "record_trust"]

TRUST_FILE_ENV = "SCIML_ZOO_TRUST_FILE"
"""Environment variable naming the trust record (tests, shared machines)."""


def trust_file() -> Path:
    """Where the trust record lives (see the module docstring)."""
    override = os.environ.get(TRUST_FILE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "sciml-zoo" / "trusted.json"


def file_digest(path: str | Path) -> str:
    """SHA-256 (hex) of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read() -> dict[str, Any]:
    path = trust_file()
    try:
        record = json.loads(path.read_text()) if path.is_file() and not path.is_symlink() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _real_file(path: str | Path) -> Path | None:
    """``path`` resolved, if it is a regular file reached without a symbolic link as its last part."""
    p = Path(path).expanduser()
    if p.is_symlink() or not p.is_file():
        return None
    return p.resolve()


def is_trusted(path: str | Path) -> bool:
    """Whether ``path`` holds, at this resolved place, exactly the bytes the user once trusted."""
    real = _real_file(path)
    if real is None:
        return False
    entry = _read().get(file_digest(real))
    return isinstance(entry, dict) and str(real) in entry.get("paths", [])


def all_trusted(paths: Iterable[str | Path]) -> bool:
    """Whether ``paths`` is not empty and every one of them :func:`is_trusted`."""
    paths = list(paths)
    return bool(paths) and all(is_trusted(p) for p in paths)


def record_trust(paths: Iterable[str | Path]) -> list[Path]:
    """Record the current bytes of each file in ``paths`` as trusted; return those recorded.

    Missing files and symbolic links are skipped. Never raises for an
    unwritable record (trust is a convenience: the command still ran with the flag).
    """
    files = [real for real in map(_real_file, paths) if real is not None]
    if not files:
        return []
    store = trust_file()
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(store.parent / f".{store.name}.lock", what=f"trust record {str(store)!r}"):
            record = _read()
            for real in files:
                entry = record.get(file_digest(real))
                paths_now = entry.get("paths", []) if isinstance(entry, dict) else []
                record[file_digest(real)] = {
                    "paths": sorted({*[p for p in paths_now if isinstance(p, str)], str(real)}),
                    "trusted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            with atomic_path(store) as tmp:
                tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    except (OSError, ValueError):
        return []
    return files
