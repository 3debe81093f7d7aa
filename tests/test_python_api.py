"""The Python API (``import sciml_zoo as sz``), the example that shows it, and ``train --preset``."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import pytest

import sciml_zoo as sz
from sciml_zoo.cli import main
from sciml_zoo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("python_api_example", ROOT / "examples" / "python_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_functions_generate_train_evaluate_compare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # compare's shared data/ cache is the working directory's
    example = _example()
    results = example.train_and_evaluate(tmp_path, iterations=2)
    assert results.errors.dims == ("method", "sim", "step") and set(results.mae) == {"SRC", "NON"}
    assert results.per_step.dims == ("method", "step") and "| NON |" in str(results)
    compared = example.compare_methods(tmp_path, seeds=1, iterations=1)
    assert set(compared.mae) == {"SRC", "NON", "ZO-SOL[identity]"} and compared.out == tmp_path / "results"
    assert "seed" in compared.errors.dims and (tmp_path / "results" / "results.json").is_file()


def test_api_names_are_functions_and_still_the_submodules():
    import sciml_zoo.train.loop as loop  # the submodule import keeps working beside sz.train()

    assert callable(sz.train) and sz.train.loop is loop
    assert sz.evaluate.evaluate_methods.__module__ == "sciml_zoo.evaluate"
    assert "allow_exec" in str(__import__("inspect").signature(sz.compare))


def _adapter(folder: Path) -> str:
    """A module in ``folder`` whose factory wraps the registered KS solver; returns its (unique) name."""
    name = f"user_adapter_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(
        "import sciml_zoo\n\ndef make(**options):\n    return sciml_zoo.make_solver('ks', **options)\n"
    )
    return name


def _recipe(folder: Path, solver: str, name: str = "mine") -> Path:
    text = (ROOT / "datasets" / "ks_tiny.toml").read_text().replace('solver = "ks"', f'solver = "{solver}"')
    path = folder / f"{name}.toml"
    path.write_text(text.replace('name = "ks_tiny"', f'name = "{name}"'))
    return path


def test_a_dataset_naming_module_factory_evaluates_from_python_with_allow_exec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the adapter's folder: no PYTHONPATH, no package
    module = _adapter(tmp_path)
    data = sz.generate(_recipe(tmp_path, f"{module}:make"), allow_exec=True)
    assert data == Path("data/mine.h5")
    with pytest.raises(ConfigError, match="allow-exec"):
        sz.evaluate(data, steps=2)
    assert set(sz.evaluate(data, steps=2, allow_exec=True).mae) == {"SRC"}
    solver = sz.dataset_solver(data, allow_exec=True)
    assert solver.state_shape == (1, 48)
    recipe = sz.load_dataset(data).recipe  # by hand: the recipe's options hold resolution; a keyword wins
    assert sz.make_solver(recipe.solver, recipe.solver_kwargs("source"), resolution=(24,)).state_shape == (1, 24)


def test_train_preset_method_trains_one_method_of_a_preset(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "zo"
    argv = ["train", "--preset", "ks_tiny", "--method", "zo-sol-identity", "--seed", "3", "--iterations", "1"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["train"]["estimator"]["name"] == "identity" and config["config"]["train"]["seed"] == 3
    assert config["config"]["train"]["iterations"] == 1 and config["config"]["model"]["width"] == 16
    assert Path("data/ks_tiny.h5").is_file()  # the dataset cache `generate` writes
    assert main(["train", "--preset", "ks_tiny", "--method", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    run = sz.train(preset="ks_tiny", method="non", out=tmp_path / "non", overrides=["train.iterations=1"])
    assert run.label == "NON" and run.summary["iterations_done"] == 1
