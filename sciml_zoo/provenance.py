"""Provenance and safe writes: package versions, and atomic file replacement.

Every result file records :func:`environment` (package versions, Python,
platform). Every file the project writes goes through :func:`atomic_path`, so a
kill mid-write leaves the previous file intact instead of a torn one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["environment", "atomic_path", "write_json", "to_jsonable"]

_PACKAGES = ("sciml-zoo", "torch", "numpy", "xarray", "h5py", "phiflow", "phiml", "py-pde")


def environment() -> dict[str, Any]:
    """Versions of Python, the platform, and the packages results depend on."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` on success.

    The rename is atomic on POSIX, so readers see either the old or the new
    file. On error the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; use the usual permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonable(value: Any) -> Any:
    """Convert dataclasses, tuples, paths and numpy scalars into JSON types.

    A dataclass whose class has a string ``name`` (an estimator) becomes
    ``{"name": ..., **fields}``.
    """
    to_dict = getattr(value, "to_dict", None)  # objects that say how they are recorded (estimators)
    if callable(to_dict) and not isinstance(value, type):
        return to_jsonable(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        name = getattr(type(value), "name", None)  # strategy objects (estimators) carry a registry name
        if isinstance(name, str) and "name" not in out:
            out = {"name": name, **out}
        return out
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")
