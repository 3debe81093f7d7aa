"""Provenance and safe writes: package versions, code fingerprints, atomic file replacement.

Every result file records :func:`environment` (package versions, Python,
platform); dataset and run hashes cover :func:`code_fingerprint` of the solver
adapter (its source files and the versions of the packages it imports). Every
file the project writes goes through :func:`atomic_path`, so a kill mid-write
leaves the previous file intact instead of a torn one.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
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

__all__ = ["environment", "code_fingerprint", "atomic_path", "write_json", "to_jsonable"]

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


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return {k: sorted(set(v)) for k, v in metadata.packages_distributions().items()}


def _imported_names(source: bytes, package: str) -> list[str]:
    """Absolute dotted names of every module ``source`` imports (in functions too), ``package`` for relative ones."""
    names: list[str] = []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # not Python source (a compiled module): its hash is all we record
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*parts, *([base] if base else [])])
            if base:
                names += [base, *(f"{base}.{a.name}" for a in node.names if a.name != "*")]
    return names


def _local_file(name: str, top: str, package_dir: Path | None, folder: Path) -> Path | None:
    """The source file of module ``name`` if it is the adapter's own code, else ``None``."""
    parts = name.split(".")
    if package_dir is not None:  # a package: its own modules are local, nothing else
        if parts[0] != top:
            return None
        base, parts = package_dir, parts[1:]
    elif parts[0] in _distributions():  # installed (sciml_zoo, torch, a simulator): recorded by version
        return None
    else:  # a single-file adapter: modules in its folder are local
        base = folder
    candidates = [base.joinpath(*parts, "__init__.py")]
    if parts:
        candidates.append(base.joinpath(*parts[:-1], f"{parts[-1]}.py"))
    return next((c for c in candidates if c.is_file()), None)


def code_fingerprint(obj: Any) -> dict[str, Any]:
    """What code ``obj`` (a solver factory) runs: its source files' hashes and its packages' versions.

    The module defining ``obj`` and, transitively, the modules it imports from
    its own package (or, for a single-file adapter, from its own folder) are
    hashed (SHA-256, keyed by their path relative to that package or folder);
    every other import (imports inside functions too: adapters import their
    simulator lazily) is recorded as the version of the installed distribution
    providing it (``None`` if none is installed). Dataset and run hashes include
    this record, so an edited adapter or an upgraded simulator package makes new
    data and runs instead of silently reusing the old ones.

    Returns:
        ``{"module": ..., "files": {path: sha256}, "packages": {distribution: version}}``.
    """
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if module is None or not file:
        return {"module": getattr(obj, "__module__", None), "files": {}, "packages": {}}
    name = module.__name__
    top = name.split(".")[0]
    in_package = "." in name or Path(file).name == "__init__.py"
    top_file = getattr(sys.modules.get(top), "__file__", None) if in_package else None
    package_dir = Path(top_file).parent if top_file and Path(top_file).name == "__init__.py" else None
    folder = package_dir.parent if package_dir else Path(file).parent
    files: dict[str, str] = {}
    imports: set[str] = {top} if package_dir else set()
    todo = [(Path(file), name if Path(file).name == "__init__.py" else name.rpartition(".")[0])]
    while todo:
        path, package = todo.pop()
        key = (  # the same key in a checkout and in an installed wheel
            f"{top}/{path.relative_to(package_dir).as_posix()}"
            if package_dir and path.is_relative_to(package_dir)
            else path.relative_to(folder).as_posix()
            if path.is_relative_to(folder)
            else path.name
        )
        if key in files:
            continue
        source = path.read_bytes()
        files[key] = hashlib.sha256(source).hexdigest()
        for imported in _imported_names(source, package):
            local = _local_file(imported, top, package_dir, folder)
            if local is not None:
                todo.append((local, imported if local.name == "__init__.py" else imported.rpartition(".")[0]))
            elif imported.split(".")[0] not in sys.stdlib_module_names:
                imports.add(imported.split(".")[0])
    packages: dict[str, str | None] = {}
    for top_name in sorted(imports):
        dists = _distributions().get(top_name)
        if not dists:
            packages[top_name] = None
        for dist in dists or ():
            try:
                packages[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                packages[dist] = None
    script = name.startswith("_sciml_zoo_script_")  # a name with a per-process hash: the file name says it
    return {"module": None if script else name, "files": files, "packages": packages}


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
