"""Every shipped preset parses, finds its recipe and names only known methods."""

from __future__ import annotations

from pathlib import Path

import pytest

import sciml_zoo
from sciml_zoo.experiment import load_experiment

PRESETS = sorted(p.stem for p in (Path(sciml_zoo.__file__).parent / "presets").glob("*.toml"))


def test_the_benchmark_presets_are_shipped() -> None:
    assert {
        "quick",
        "paper",
        "paper_cpu",
        "ks",
        "ks_tiny",
        "lorenz96",
        "gray_scott",
        "fitzhugh_nagumo",
        "ginzburg_landau",
        "brusselator",
        "shallow_water",
        "wake_long",
    } <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads(name: str) -> None:
    exp = load_experiment(name)
    assert exp.recipe.name and exp.methods
    assert {c.method for c in exp.methods.values()} <= {"non", "fo-sol", "zo-sol"}
    horizons = exp.eval_steps if isinstance(exp.eval_steps, list | tuple) else [exp.eval_steps]
    assert all(0 < h < exp.recipe.num_frames for h in horizons), (name, exp.eval_steps)


def test_paper_cpu_is_the_paper_protocol_on_the_quick_budget() -> None:
    paper, cpu, quick = (load_experiment(n) for n in ("paper", "paper_cpu", "quick"))
    assert cpu.recipe == paper.recipe and cpu.eval_steps == paper.eval_steps
    for key in ("unroll", "iterations", "batch_size", "lr"):
        assert getattr(cpu.methods["fo-sol"], key) == getattr(quick.methods["fo-sol"], key), key


def test_wake_long_is_the_quick_wake_at_unroll_16_with_clipping_for_every_method() -> None:
    long, quick = load_experiment("wake_long"), load_experiment("quick")
    assert long.recipe == quick.recipe and long.eval_steps == quick.eval_steps
    assert {"non", "fo-sol", "zo-sol-stop-gradient", "zo-sol-identity"} <= set(long.methods)
    for key, cfg in long.methods.items():
        assert cfg.grad_clip == 1.0, key  # the same clipping for every method
        if cfg.method != "non":
            assert cfg.unroll >= 16 and cfg.curriculum, key
