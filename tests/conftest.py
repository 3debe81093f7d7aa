"""Shared fixtures: a small toy dataset generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _trust_record(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own trust record (sciml_zoo.trust): a test's --allow-exec never trusts files for another,
    nor writes the user's ~/.config."""
    path = tmp_path_factory.mktemp("trust") / "trusted.json"
    monkeypatch.setenv("SCIML_ZOO_TRUST_FILE", str(path))
    return path


@pytest.fixture(scope="session")
def toy_recipe():
    from sciml_zoo.experiment import load_recipe

    return load_recipe(str(ASSETS / "toy.toml"))


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory: pytest.TempPathFactory, toy_recipe) -> Path:
    from sciml_zoo.data.generate import generate_dataset

    return generate_dataset(toy_recipe, tmp_path_factory.mktemp("data") / "toy.h5", progress=False)
