"""Facts about the package's shape that a reader can check: imports and module sizes.

- Every module of ``sciml_zoo`` imports on its own, so an import cycle (which
  only shows when the "wrong" module is imported first) or a dependency hidden
  by another module's import fails here, naming the module. The exact check, a
  fresh interpreter per module, costs a torch import each (~2-4 s, minutes for
  the package), so it is marked ``slow``; the default suite runs the same
  imports in forked children that already hold torch, numpy and xarray but no
  ``sciml_zoo`` module (seconds, and it sees the same cycles and hidden
  in-package dependencies).
- Modules stay small (most under about 300 lines); the few that
  are longer are listed below with the reason.
- Imports inside functions carry a reason (an optional package, a worker-side
  import, a fast CLI start): see ``FUNCTION_LEVEL_IMPORTS``.
"""

from __future__ import annotations

import ast
import importlib
import multiprocessing
import pkgutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

import sciml_zoo

PACKAGE = Path(sciml_zoo.__file__).resolve().parent
ROOT = PACKAGE.parent
MAX_LINES = 300

LONG_MODULES = {
    "faults.py": "the fault policy is one state machine (timeouts, retries, bisecting failed members, restarts); "
    "split, its parts would share private state",
    "estimators/stencil.py": "the stencil estimator's fit, its N-D neighbourhood features and their docstrings "
    "(with the equations) belong together",
}
"""Modules allowed over ``MAX_LINES`` lines, each with why splitting is not the honest fix."""

FUNCTION_LEVEL_IMPORTS = {
    "cli.py": "the console script imports torch and the subcommand's modules only once it knows the subcommand "
    "(`sciml-zoo --help` and argument errors answer at once)",
    "cli_args.py": "`sciml-zoo train` loads the run-config and preset modules only once the subcommand is train",
    "api.py": "`import sciml_zoo` stays light: each API function loads its modules (data, training, plots) "
    "on first call",
    "config_io.py": "tomllib, or tomli on Python < 3.11 (inside try/except at module level)",
    "executors/dask_executor.py": "`distributed` is optional (the dask extra); the worker-side import runs on "
    "dask workers",
    "executors/worker.py": "`distributed` is optional: the worker's address when run under dask",
    "report_cli.py": "imported whenever `sciml-zoo` builds its parser; the renderers (xarray, and torch through "
    "tables) load only when `report` runs",
}
"""Modules that import inside functions (or at module level inside ``try``), with the reason."""


def _modules() -> list[str]:
    names = ["sciml_zoo"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="sciml_zoo."):
        names.append(info.name)
    return sorted(names)


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _import_fresh(module: str) -> str:
    """In a forked child: forget every ``sciml_zoo`` module, import ``module``; the error or ''."""
    for name in [n for n in sys.modules if n == "sciml_zoo" or n.startswith("sciml_zoo.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
    except BaseException:  # noqa: BLE001 - report whatever the import raised
        return traceback.format_exc(limit=-6)
    return ""


def test_every_module_imports_alone_in_a_forked_child():
    import numpy  # noqa: F401 - loaded once in the parent, inherited by every child
    import torch  # noqa: F401
    import xarray  # noqa: F401

    modules = _modules()
    with multiprocessing.get_context("fork").Pool(processes=2, maxtasksperchild=1) as pool:
        errors = dict(zip(modules, pool.map(_import_fresh, modules, chunksize=1), strict=True))
    failed = {name: err for name, err in errors.items() if err}
    assert not failed, "modules that fail to import alone:\n" + "\n".join(f"{k}:\n{v}" for k, v in failed.items())


def _loaded_after(module: str) -> list[str]:
    """In a forked child: the ``sciml_zoo`` modules that importing ``module`` alone loads."""
    for name in [n for n in sys.modules if n == "sciml_zoo" or n.startswith("sciml_zoo.")]:
        del sys.modules[name]
    importlib.import_module(module)
    return sorted(n for n in sys.modules if n.startswith("sciml_zoo."))


@pytest.mark.parametrize("module", ["sciml_zoo.evaluate", "sciml_zoo.diagnostics"])
def test_evaluation_and_diagnostics_do_not_import_the_training_loop(module):
    with multiprocessing.get_context("fork").Pool(processes=1, maxtasksperchild=1) as pool:
        loaded = pool.apply(_loaded_after, (module,))
    assert "sciml_zoo.train.loop" not in loaded, f"{module} imports the training loop (data: sciml_zoo.data.loading)"


TRAINING_ENTRY_POINTS = {
    "api.py": "`sz.train(...)` runs the loop",
    "cli.py": "`sciml-zoo train` runs the loop",
    "compare.py": "trains every method of a preset",
    "diagnostics.py": "`sciml-zoo diagnose` measures the training gradient (train.gradients, train.objective)",
}
"""The only modules outside ``train/`` that may import ``sciml_zoo.train``: the entry points that train."""


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_nothing_below_the_training_entry_points_imports_train():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        name = _relative(path)
        if name.startswith("train/") or name in TRAINING_ENTRY_POINTS:
            continue
        hits = sorted(m for m in _imported_modules(path) if m == "sciml_zoo.train" or m.startswith("sciml_zoo.train."))
        if hits:
            offenders[name] = hits
    assert not offenders, f"modules below train/ that import it (config dataclasses: sciml_zoo.config): {offenders}"


@pytest.mark.parametrize("module", ["sciml_zoo.config", "sciml_zoo.runs", "sciml_zoo.experiment"])
def test_config_and_runs_load_no_training_module(module):
    with multiprocessing.get_context("fork").Pool(processes=1, maxtasksperchild=1) as pool:
        loaded = pool.apply(_loaded_after, (module,))
    assert not [n for n in loaded if n.startswith("sciml_zoo.train")], f"{module} loads {loaded}"


@pytest.mark.slow
@pytest.mark.parametrize("module", _modules())
def test_every_module_imports_alone_in_a_fresh_interpreter(module):
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"import {module} failed alone:\n{proc.stderr[-2000:]}"


def test_modules_are_small_or_listed_with_a_reason():
    sizes = {_relative(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in LONG_MODULES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}; split them or list them with a reason"
    stale = sorted(name for name in LONG_MODULES if sizes.get(name, 0) <= MAX_LINES)
    assert not stale, f"{stale} are no longer over {MAX_LINES} lines (or gone): remove them from LONG_MODULES"


def _nested_imports(path: Path) -> list[int]:
    """Line numbers of imports that are not at a module's top level."""
    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            lines.append(node.lineno)
    return lines


def test_function_level_imports_have_a_reason():
    found = {_relative(p): _nested_imports(p) for p in PACKAGE.rglob("*.py")}
    unlisted = {name: lines for name, lines in found.items() if lines and name not in FUNCTION_LEVEL_IMPORTS}
    assert not unlisted, f"imports inside functions without a listed reason: {unlisted}; move them to the top"
    stale = sorted(name for name in FUNCTION_LEVEL_IMPORTS if not found.get(name))
    assert not stale, f"{stale} no longer import inside functions: remove them from FUNCTION_LEVEL_IMPORTS"
