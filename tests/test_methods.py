"""Training methods are objects with one registry; no module tests a method by its name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sciml_zoo
from sciml_zoo.config import TrainConfig
from sciml_zoo.errors import ConfigError
from sciml_zoo.methods import FO_SOL, METHODS, NON, ZO_SOL, get_method

PACKAGE = Path(sciml_zoo.__file__).resolve().parent


def test_the_registry_maps_names_to_methods():
    assert METHODS == {"non": NON, "fo-sol": FO_SOL, "zo-sol": ZO_SOL}
    assert [m.steps(4) for m in (NON, FO_SOL, ZO_SOL)] == [1, 4, 4]
    assert FO_SOL.differentiable and not NON.differentiable and not ZO_SOL.differentiable
    assert ZO_SOL.uses_estimator and not FO_SOL.uses_estimator
    with pytest.raises(ConfigError, match=r"train.method must be one of non, fo-sol, zo-sol; got 'sol'"):
        get_method("sol")


@pytest.mark.parametrize(("name", "label", "steps"), [("non", "NON", 1), ("fo-sol", "FO-SOL", 3)])
def test_a_config_gives_its_method(name, label, steps):
    cfg = TrainConfig(method=name, unroll=3)
    assert cfg.method_spec is METHODS[name] and cfg.label == label and cfg.steps == steps


def test_no_module_compares_a_method_name():
    names = {"non", "fo-sol", "zo-sol"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                constants = [c.value for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)]
                if names & set(constants):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, f"method names tested as strings (ask sciml_zoo.methods' object instead): {found}"
