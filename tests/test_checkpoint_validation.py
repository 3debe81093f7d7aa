"""Corrupt checkpoints: every one is refused by ``sciml-zoo train --resume`` with one line naming the field.

A ZO-SOL run with a stateful estimator (``auto``) and an LR scheduler is
stopped after two iterations; each case below corrupts one field of a copy of
its checkpoint (the second audit's 21 cases and more) and resumes it through
the CLI's ``main`` in this process: exit 2, one stderr line, no traceback.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from sciml_zoo.cli import main
from sciml_zoo.experiment import load_run_config
from sciml_zoo.train.loop import train

SETTINGS = [
    "train.method=zo-sol",
    "train.estimator=auto",
    "train.estimator_options.check_every=1",
    "train.unroll=2",
    "train.iterations=4",
    "train.batch_size=2",
    "train.checkpoint_every=1",
    "train.scheduler=StepLR",
    "train.scheduler_options.step_size=1",
    "model.width=8",
    "model.kernel_size=3",
]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, toy_dataset) -> Path:
    """A run directory stopped (with a checkpoint) after 2 of 4 iterations."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    config = load_run_config(None, [f"data={toy_dataset}", *SETTINGS])
    train(config, run, progress=False, stop_after=2)
    return run


def _first(state: dict[str, Any]) -> str:
    return next(iter(state))


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    """A corruption that loads the checkpoint, changes it and saves it (tensors + plain data still)."""

    def corrupt(path: Path) -> None:
        ckpt = torch.load(path, weights_only=True)
        change(ckpt)
        torch.save(ckpt, path)

    return corrupt


def _set(key: str, value: Any) -> Callable[[Path], None]:
    return _edit(lambda c: c.__setitem__(key, value))


def _bytes(make: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(make(path.read_bytes()))


def _adam_state(c: dict[str, Any]) -> dict[str, Any]:
    return c["optimizer"]["state"][0]


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    # the file itself
    "random bytes": (_bytes(lambda b: os.urandom(4096)), "not a sciml-zoo checkpoint"),
    "truncated file": (_bytes(lambda b: b[: len(b) // 2]), "corrupt"),
    "empty file": (_bytes(lambda b: b""), "corrupt"),
    "not a table": (lambda p: torch.save([1, 2, 3], p), "format"),
    "no format tag": (_edit(lambda c: c.pop("format")), "format"),
    "config a list": (_set("config", [1]), "field config"),
    "hash a number": (_set("hash", 5), "field hash"),
    # missing keys
    "missing probe_generator": (_edit(lambda c: c.pop("probe_generator")), "field probe_generator is missing"),
    "missing iteration and log": (
        _edit(lambda c: [c.pop("iteration"), c.pop("log")]),
        "field iteration is missing (and log)",
    ),
    # the model
    "model stored as a list": (_edit(lambda c: c.__setitem__("model", list(c["model"].values()))), "field model"),
    "model tensor of the wrong shape": (
        _edit(lambda c: c["model"].__setitem__(_first(c["model"]), torch.zeros(3))),
        "has shape (3,)",
    ),
    "model key missing": (_edit(lambda c: c["model"].pop(_first(c["model"]))), "field model lacks key"),
    "model key unknown": (_edit(lambda c: c["model"].__setitem__("extra", torch.zeros(1))), "unknown key"),
    "model value a string": (
        _edit(lambda c: c["model"].__setitem__(_first(c["model"]), "abc")),
        "must be a tensor",
    ),
    # generators
    "generator too short": (_edit(lambda c: c.__setitem__("generator", c["generator"][:10])), "field generator"),
    "generator a string": (_set("generator", "abc"), "field generator"),
    "probe generator as floats": (
        _edit(lambda c: c.__setitem__("probe_generator", c["probe_generator"].float())),
        "field probe_generator",
    ),
    "torch rng truncated": (_edit(lambda c: c.__setitem__("torch_rng", c["torch_rng"][:-5])), "field torch_rng"),
    # optimizer and scheduler
    "optimizer a string": (_set("optimizer", "abc"), "field optimizer"),
    "optimizer moment of the wrong shape": (
        _edit(lambda c: _adam_state(c).__setitem__("exp_avg", torch.zeros(2, 2))),
        "field optimizer.state[0].exp_avg",
    ),
    "optimizer param groups empty": (
        _edit(lambda c: c["optimizer"].__setitem__("param_groups", [])),
        "field optimizer.param_groups",
    ),
    "optimizer lr a string": (
        _edit(lambda c: c["optimizer"]["param_groups"][0].__setitem__("lr", "fast")),
        "field optimizer.param_groups[0].lr",
    ),
    "optimizer state of no parameter": (
        _edit(lambda c: c["optimizer"]["state"].__setitem__(999, {})),
        "field optimizer.state[999]",
    ),
    "scheduler a number": (_set("scheduler", 5), "field scheduler"),
    "scheduler missing its state": (_set("scheduler", None), "field scheduler"),
    "scheduler last_epoch a string": (
        _edit(lambda c: c["scheduler"].__setitem__("last_epoch", "x")),
        "field scheduler.last_epoch",
    ),
    # counters
    "log=5": (_set("log", 5), "field log"),
    "log one row short": (_edit(lambda c: c["log"].pop()), "rows (one per iteration), got a list of 1"),
    'iteration="abc"': (_set("iteration", "abc"), "field iteration must be an integer"),
    "iteration=-5": (_set("iteration", -5), "field iteration must be in [0, 4]"),
    "iteration past the end": (_set("iteration", 10**6), "field iteration must be in [0, 4]"),
    "wall_s nan": (_set("wall_s", float("nan")), "field wall_s"),
    "skipped_in_a_row=-1": (_set("skipped_in_a_row", -1), "field skipped_in_a_row"),
    "solver_steps=1.5": (_set("solver_steps", 1.5), "field solver_steps"),
    # fault counts and gradient sources
    "fault count a string": (
        _edit(lambda c: c["fault_counts"].__setitem__("failures", "x")),
        "field fault_counts.failures",
    ),
    "fault count unknown": (_edit(lambda c: c["fault_counts"].__setitem__("bogus", 1)), "field fault_counts"),
    "gradient a list": (_set("gradient", [1]), "field gradient"),
    "gradient unroll not a length": (
        _edit(lambda c: c["gradient"].__setitem__("abc", {})),
        "field gradient.abc",
    ),
    "estimator state of the wrong type": (
        _edit(lambda c: next(iter(c["gradient"].values()))["estimator"].__setitem__("steps", "x")),
        "estimator.steps must be",
    ),
    "member-drop tallies of the wrong length": (
        _edit(lambda c: c["parts"]["member_drops"]["drawn"].append(1)),
        "field parts.member_drops.drawn has",
    ),
    "estimator state a list": (
        _edit(lambda c: next(iter(c["gradient"].values())).__setitem__("estimator", [1])),
        "estimator must be a table",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_corrupt_checkpoint_is_one_line_naming_the_field(case, stopped_run, toy_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    corrupt, expected = CASES[case]
    corrupt(run / "checkpoint.pt")
    capsys.readouterr()
    args = ["train", "--out", str(run), "--quiet", "--resume", *(f"--set={s}" for s in SETTINGS)]
    code = main([*args, f"--set=data={toy_dataset}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert expected in err[0] and "Traceback" not in err[0], err[0]
    assert "could run code" not in err[0]


def test_the_uncorrupted_copy_resumes(stopped_run, toy_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    args = ["train", "--out", str(run), "--quiet", "--resume", *(f"--set={s}" for s in SETTINGS)]
    assert main([*args, f"--set=data={toy_dataset}"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 4


def test_evaluate_refuses_a_model_stored_as_a_list(stopped_run, toy_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(stopped_run, run)
    CASES["model stored as a list"][0](run / "checkpoint.pt")
    code = main(["evaluate", "--data", str(toy_dataset), str(run), "--steps", "2"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "field model" in err[0], err
