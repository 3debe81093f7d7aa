"""Every bad input is one line naming the value, the key and the fix, exit 2 (issue 11 item 4).

Table-driven, in-process (``main([...])``): each row is a command line with
``{placeholders}`` for the shared files and a phrase its one error line must hold.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import pytest

from sciml_zoo import registry
from sciml_zoo.cli import main
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

ASSETS = Path(__file__).parent / "assets"


def _unwritable(root: Path) -> Path:
    """A folder no file can be written in, for root too (CI may run as root)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/sys/sciml-zoo-unwritable")  # sysfs refuses new entries, even to root
    ro = root / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, toy_dataset: Path, toy_recipe) -> dict[str, str]:
    from sciml_zoo.data.generate import generate_dataset

    root = tmp_path_factory.mktemp("bad")
    other = generate_dataset(replace(toy_recipe, name="toy4", source_resolution=(4, 4)), root / "toy4.h5")
    run = root / "run"
    assert (
        main(["train", "--data", str(toy_dataset), "--out", str(run), "--method", "non"] + ["--iterations", "1"]) == 0
    )
    no_recipe = root / "no_recipe.h5"
    shutil.copy(toy_dataset, no_recipe)
    with h5py.File(no_recipe, "r+") as f:
        del f.attrs["recipe"]
    (root / "a_file").write_text("not a folder")
    (root / "corrupt.h5").write_bytes(b"\x89HDF\r\n" + b"garbage" * 50)
    return {
        "data": str(toy_dataset),
        "other": str(other),
        "run": str(run),
        "no_recipe": str(no_recipe),
        "ro": str(_unwritable(root)),
        "file": str(root / "a_file"),
        "corrupt": str(root / "corrupt.h5"),
        "missing": str(root / "missing.h5"),
        "out": str(root / "out"),
        "toy_recipe": str(ASSETS / "toy.toml"),
        "preset": str(ASSETS / "toy_preset.toml"),
    }


TRAIN = "train --data {data} --out {out} --method non --quiet"
CASES = [
    ("batch_size 1.5", TRAIN + " --set train.batch_size=1.5", "train.batch_size must be an integer, got 1.5"),
    ("iterations 10.0", TRAIN + " --iterations 10.0", "train.iterations must be an integer, got 10.0"),
    ("seed abc", TRAIN + " --seed abc", "train.seed must be an integer, got 'abc'"),
    ("lr abc", TRAIN + " --lr abc", "train.lr must be a number, got 'abc'"),
    ("estimator_options 5", TRAIN + " --method zo-sol --set train.estimator_options=5", "train.estimator_options"),
    ("estimator option", TRAIN + " --method zo-sol --estimator stencil --set train.estimator_options.nope=1", "nope"),
    ("unknown method", TRAIN + " --method xx", "train.method must be one of non, fo-sol, zo-sol; got 'xx'"),
    ("unknown estimator", TRAIN + " --method zo-sol --estimator nope", "unknown estimator 'nope'"),
    ("negative unroll", TRAIN + " --unroll -2", "train.unroll must be >= 1, got -2"),
    ("batch_size 0", TRAIN + " --batch-size 0", "train.batch_size must be >= 1, got 0"),
    ("unknown key", TRAIN + " --set train.learning_rate=1", "'learning_rate'"),
    ("override without =", TRAIN + " --set train.lr", "must look like section.key=value"),
    ("bad padding", TRAIN + " --set model.padding=mirror", "model.padding must be one of"),
    ("bad optimizer", TRAIN + " --optimizer Adamm", "train.optimizer 'Adamm'"),
    ("bad device", TRAIN + " --device tpu", "'tpu' is not a torch device"),
    ("timeout -1", TRAIN + " --timeout -1", "train.timeout_s must be > 0, got -1"),
    ("resume nothing", TRAIN + " --resume", "not found; train first"),
    ("missing flag", "train --data {data}", "required: --out"),
    ("dataset without recipe: train", "train --data {no_recipe} --out {out} --method non", "has no 'recipe' attribute"),
    ("dataset without recipe: evaluate", "evaluate --data {no_recipe}", "has no 'recipe' attribute"),
    ("missing dataset", "evaluate --data {missing}", "not found; generate it"),
    ("corrupt dataset", "train --data {corrupt} --out {out} --method non", "is corrupt or not HDF5"),
    ("run of another dataset: evaluate", "evaluate --data {other} {run} --steps 2", "does not fit dataset"),
    ("run of another dataset: diagnose", "diagnose --data {other} --run {run} --estimators identity", "does not fit"),
    ("missing run", "evaluate --data {data} {missing} --steps 2", "not found; train first"),
    ("steps 0", "evaluate --data {data} --steps 0", "--steps must be a positive integer, got '0'"),
    ("steps -3", "evaluate --data {data} --steps -3", "--steps must be a positive integer, got '-3'"),
    ("steps past the data", "evaluate --data {data} --steps 99", "use --steps 29 or fewer"),
    ("evaluate bad device", "evaluate --data {data} --steps 2 --device tpu", "--device 'tpu' is not a torch device"),
    ("read-only train --out", "train --data {data} --out {ro}/r --method non", "cannot write run directory"),
    ("read-only generate --out", "generate {toy_recipe} --out {ro}/x.h5 --quiet", "is not writable"),
    ("read-only evaluate --out", "evaluate --data {data} --steps 2 --out {ro}/e.nc", "cannot write --out"),
    ("train --out under a file", "train --data {data} --out {file}/r --method non", "cannot write run directory"),
    ("generate --out under a file", "generate {toy_recipe} --out {file}/x.h5 --quiet", "is a file, not a folder"),
    ("evaluate --out under a file", "evaluate --data {data} --steps 2 --out {file}/e.nc", "cannot write --out"),
    ("unknown preset", "compare --preset nope", "preset 'nope' not found; available presets:"),
    ("unknown recipe", "generate nope", "dataset recipe 'nope' not found; built-in recipes:"),
    ("missing recipe file", "generate ./nope.toml", "dataset recipe file './nope.toml' not found"),
    ("seeds 0", "compare --preset {preset} --seeds 0", "--seeds must be a positive integer, got '0'"),
    ("compare bad device", "compare --preset {preset} --device tpu", "--device 'tpu' is not a torch device"),
    ("diagnose unknown estimator", "diagnose --data {data} --estimators nope", "unknown estimator 'nope'"),
    ("diagnose negative unroll", "diagnose --data {data} --unroll -1", "--unroll must be a positive integer"),
    (
        "diagnose bad option",
        "diagnose --data {data} --estimators stencil --estimator-option stencil.kernel_size=abc",
        "kernel_size='abc' is invalid",
    ),
    ("solver option without =", "evaluate --data {data} --solver-option novalue", "must look like"),
    ("unknown solver option", "evaluate --data {data} --steps 2 --solver-option bogus=1", "bad options for solver"),
    ("unknown solver", "evaluate --data {data} --steps 2 --solver nope", "unknown solver 'nope'"),
]


@pytest.mark.parametrize(("argv", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(paths, argv: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    try:
        code = main(argv.format(**paths).split())
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert needle in err[0], err


class _Float64(ToyDiffusion):
    name = "f64-toy"

    def step(self, state, params):
        return super().step(state, params).double()


@pytest.mark.parametrize("method", ["non", "fo-sol", "zo-sol"])
def test_float64_adapter_is_named_at_the_step_boundary(paths, method, monkeypatch, capsys) -> None:
    monkeypatch.setitem(registry._RUNTIME, "toy-diffusion", lambda **kw: _Float64(**kw))
    argv = ["train", "--data", paths["data"], "--out", paths["out"] + method, "--method", method, "--quiet"]
    assert main([*argv, "--iterations", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "f64-toy.step returned dtype torch.float64 for a torch.float32 state" in err[0], err


def test_compare_with_a_failed_method_prints_the_others_and_exits_2(tmp_path, capsys) -> None:
    preset = str(ASSETS / "toy_preset.toml")
    sets = ["train.iterations=4", "eval_steps=5", "methods.fo-sol.lr=1e30", "methods.fo-sol.optimizer=SGD"]
    sets += ["methods.fo-sol.method=non", "methods.fo-sol.checkpoint_every=1"]
    argv = ["compare", "--preset", preset, "--out", str(tmp_path / "c"), "--quiet"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 2
    out, err = capsys.readouterr()
    assert "| NON (non) |" in out and "| NON (fo-sol) | failed: " in out
    assert "1 method(s) failed: NON (fo-sol)" in err.splitlines()[-1]
