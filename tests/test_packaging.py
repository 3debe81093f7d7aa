"""The wheel's explicit package list covers every subpackage (issue 11 item 5)."""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_in_the_explicit_package_list() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {"sciml_zoo", "sciml_zoo_solvers", "sciml_zoo.recipes"}
    for folder in (ROOT / "sciml_zoo").rglob("*"):
        if folder.is_dir() and "__pycache__" not in folder.parts and any(folder.glob("*.py")):
            found.add(".".join(folder.relative_to(ROOT).parts))
    found.add("sciml_zoo.presets")
    assert found == listed, f"add to packages: {sorted(found - listed)}; stale: {sorted(listed - found)}"
    assert config["package-dir"] == {"sciml_zoo_solvers": "solvers", "sciml_zoo.recipes": "datasets"}


def test_recipes_resolve_to_the_package_own() -> None:
    from sciml_zoo.experiment import RECIPE_DIR

    assert (RECIPE_DIR / "ks_tiny.toml").is_file()
