"""Trust given once (sciml_zoo.trust), solvers named on the command line import from the working
directory, and paths in files are relative to the file that names them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from sciml_zoo.cli import main
from sciml_zoo.errors import ConfigError
from sciml_zoo.experiment import load_experiment, load_recipe
from sciml_zoo.trust import all_trusted, is_trusted, record_trust, trust_file

ROOT = Path(__file__).resolve().parents[1]


def _adapter(folder: Path) -> str:
    name = f"cwd_adapter_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(
        "import sciml_zoo\n\ndef make(**options):\n    return sciml_zoo.make_solver('ks', **options)\n"
    )
    return name


def _recipe(folder: Path, solver: str) -> Path:
    text = (ROOT / "datasets" / "ks_tiny.toml").read_text().replace('solver = "ks"', f'solver = "{solver}"')
    path = folder / "recipe.toml"
    path.write_text(text.replace('name = "ks_tiny"', 'name = "mine"'))
    return path


def test_trust_record_is_keyed_by_content_and_place(tmp_path, _trust_record):
    f = tmp_path / "recipe.toml"
    f.write_text("a = 1\n")
    assert trust_file() == _trust_record and not is_trusted(f) and not all_trusted([])
    assert record_trust([f, tmp_path / "missing.toml"]) == [f.resolve()]
    assert is_trusted(f) and json.loads(_trust_record.read_text())  # a whole JSON file (atomic write)
    link = tmp_path / "link.toml"
    link.symlink_to(f)
    assert not is_trusted(link)  # a link is never trusted, nor recorded
    copy = tmp_path / "copy.toml"
    copy.write_text("a = 1\n")
    assert not is_trusted(copy)  # same bytes, another place
    f.write_text("a = 2\n")
    assert not is_trusted(f)  # a changed file is untrusted again


def test_allow_exec_given_once_then_remembered_until_the_file_changes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a scratch folder holding only the adapter and a recipe naming it
    recipe = _recipe(tmp_path, f"{_adapter(tmp_path)}:make")
    assert main(["generate", "recipe.toml", "--quiet"]) == 2  # the default stays safe
    assert "--allow-exec" in capsys.readouterr().err
    assert main(["generate", "recipe.toml", "--allow-exec", "--quiet"]) == 0
    assert main(["generate", "recipe.toml", "--quiet"]) == 0  # trusted: no flag again
    assert "trusting" in capsys.readouterr().err
    assert main(["evaluate", "--data", "data/mine.h5", "--steps", "2"]) == 0  # the dataset it wrote, too
    preset = (ROOT / "sciml_zoo" / "presets" / "ks_tiny.toml").read_text().replace('"ks_tiny"', '"recipe.toml"')
    Path("preset.toml").write_text(preset)  # names the trusted recipe: compare needs no flag either
    argv = ["compare", "--preset", "preset.toml", "--methods", "non", "--set", "train.iterations=1", "--quiet"]
    assert main([*argv, "--out", "res"]) == 0
    assert json.loads(Path("res/results.json").read_text())["dataset"]["path"] == "data/mine.h5"  # generate's file
    recipe.write_text(recipe.read_text() + "# edited\n")
    assert main(["generate", "recipe.toml", "--quiet"]) == 2  # changed: untrusted again


def test_solver_named_on_the_command_line_imports_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = _adapter(tmp_path)
    _recipe(tmp_path, "ks")
    argv = ["generate", "recipe.toml", "--quiet", "--out", "d.h5"]
    assert main([*argv, "--solver", f"{module}:make"]) == 0
    assert main([*argv, "--solver", "no_such_module_here:make", "--overwrite"]) == 2


def test_paths_in_files_are_relative_to_the_file_that_names_them(tmp_path, monkeypatch):
    sub = tmp_path / "project"
    sub.mkdir()
    (sub / "adapter.py").write_text(
        "import sciml_zoo\n\ndef make(**options):\n    return sciml_zoo.make_solver('ks', **options)\n"
    )
    _recipe(sub, "adapter.py:make")
    (sub / "preset.toml").write_text(
        (ROOT / "sciml_zoo" / "presets" / "ks_tiny.toml").read_text().replace('"ks_tiny"', '"recipe.toml"')
    )
    monkeypatch.chdir(tmp_path)  # not the files' folder
    recipe = load_experiment("project/preset.toml").recipe
    assert recipe.solver == f"{(sub / 'adapter.py').resolve()}:make"
    assert load_recipe("project/recipe.toml").solver == recipe.solver
    assert main(["generate", "project/recipe.toml", "--quiet"]) == 2  # still needs trust
    assert main(["generate", "project/recipe.toml", "--allow-exec", "--quiet"]) == 0
    (sub / "link.toml").symlink_to(sub / "recipe.toml")
    (sub / "p2.toml").write_text((sub / "preset.toml").read_text().replace('"recipe.toml"', '"link.toml"'))
    with pytest.raises(ConfigError, match="symbolic link"):
        load_experiment(str(sub / "p2.toml"))
