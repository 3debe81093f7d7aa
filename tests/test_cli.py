"""The CLI: one-line errors (no traceback) for user mistakes; commands work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from sciml_zoo.cli import main
from sciml_zoo.registry import register
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

ASSETS = Path(__file__).parent / "assets"


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sciml_zoo.cli", *args], capture_output=True, text=True, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and needle in lines[0]


def test_bad_config_key_is_one_line(tmp_path, toy_dataset):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nmethod = 'fo-sol'\nlearning_rate = 1e-3\n")
    proc = _run_cli("train", "--config", str(cfg), "--data", str(toy_dataset), "--out", str(tmp_path / "r"))
    _one_line_error(proc, "unknown key(s) 'learning_rate' in [train]; valid keys:")


def test_missing_dataset_is_one_line(tmp_path):
    proc = _run_cli(
        "train",
        "--data",
        str(tmp_path / "missing.h5"),
        "--out",
        str(tmp_path / "r"),
        "--method",
        "non",
    )
    _one_line_error(proc, "not found; generate it with `sciml-zoo generate`")


def test_corrupt_hdf5_is_one_line(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n" + b"garbage" * 50)
    proc = _run_cli("evaluate", "--data", str(bad))
    _one_line_error(proc, "is corrupt or not HDF5")


def test_bad_preset_override_is_one_line():
    proc = _run_cli("compare", "--preset", str(ASSETS / "toy_preset.toml"), "--set", "train.lrr=1")
    _one_line_error(proc, "unknown key(s) 'lrr'")


class _NaNSolver(ToyDiffusion):
    name = "nan-toy"
    members: slice = slice(1, 2)  # member 1 diverges

    def step(self, state, params):
        out = super().step(state, params)
        out[self.members, 0, 2, 2] = float("nan")
        return out


def _train_nan(tmp_path, toy_dataset, members, iterations=2, retries=2):
    _NaNSolver.members = members
    register("toy-diffusion", lambda **kw: _NaNSolver(**kw))
    try:
        return main(
            ["train", "--data", str(toy_dataset), "--out", str(tmp_path / "r"), "--method", "non"]
            + ["--iterations", str(iterations), "--retries", str(retries), "--quiet"]
        )
    finally:
        from sciml_zoo import registry

        registry._RUNTIME.pop("toy-diffusion")


def test_nan_from_every_member_is_one_line(tmp_path, toy_dataset, capsys):
    """A solver that diverges for every member stops the run with one line naming it (exit 2)."""
    code = _train_nan(tmp_path, toy_dataset, slice(None), iterations=5)  # > max_consecutive_failures
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "solver 'nan-toy'" in err[0] and "NaN/Inf" in err[0] and "--resume" in err[0]


def test_nan_from_one_member_is_dropped_and_counted(tmp_path, toy_dataset, capsys):
    """A member whose solve diverges is dropped from the iteration's loss and counted (issue 10)."""
    code = _train_nan(tmp_path, toy_dataset, slice(1, 2), retries=0)  # no retry: the member is dropped at once
    assert code == 0
    faults = json.loads((tmp_path / "r" / "summary.json").read_text())["faults"]
    assert faults["dropped_members"] >= 2 and faults["failures"] >= 2


def test_train_and_evaluate_commands(tmp_path, toy_dataset, capsys):
    assert (
        main(
            [
                "train",
                "--data",
                str(toy_dataset),
                "--out",
                str(tmp_path / "fo"),
                "--method",
                "fo-sol",
                "--unroll",
                "2",
                "--iterations",
                "3",
                "--set",
                "model.width=4",
                "--quiet",
            ]
        )
        == 0
    )
    assert "FO-SOL: 3 iterations" in capsys.readouterr().out
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(toy_dataset),
                str(tmp_path / "fo"),
                "--steps",
                "5",
                "--out",
                str(tmp_path / "e.nc"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| SRC |" in out and "| FO-SOL |" in out
    import xarray as xr

    assert xr.open_dataarray(tmp_path / "e.nc").sizes == {"method": 2, "sim": 2, "step": 5}


def test_solvers_lists_capabilities(capsys):
    assert main(["solvers"]) == 0
    out = capsys.readouterr().out
    assert "toy-diffusion" in out and "differentiable=True" in out
    torch.manual_seed(0)


def test_evaluate_defaults_to_a_valid_horizon_and_shows_training_columns(tmp_path, toy_dataset, capsys):
    args = ["train", "--data", str(toy_dataset), "--out", str(tmp_path / "non"), "--method", "non"]
    assert main([*args, "--iterations", "2", "--set", "model.width=4", "--quiet"]) == 0
    capsys.readouterr()
    nc = tmp_path / "e.nc"
    assert (
        main(["evaluate", "--data", str(toy_dataset), str(tmp_path / "non"), str(tmp_path / "non"), "--out", str(nc)])
        == 0
    )
    out = capsys.readouterr().out
    non_rows = [ln for ln in out.splitlines() if ln.startswith("| NON")]
    assert len(non_rows) == 2  # two runs with one label stay two rows
    assert "| 6 |" in non_rows[0]  # training solver steps: 2 iterations x batch 3 x 1 step
    import xarray as xr

    assert xr.open_dataarray(nc).sizes["step"] == 29  # min(100, 30 frames - 1)


def test_bad_cli_values_are_one_line(tmp_path, toy_dataset):
    base = ["train", "--data", str(toy_dataset), "--out", str(tmp_path / "r"), "--method", "non"]
    _one_line_error(_run_cli(*base, "--set", "train.batch_size=1.5"), "train.batch_size must be an integer")
    _one_line_error(_run_cli(*base, "--lr", "abc"), "train.lr must be a number")
    _one_line_error(_run_cli(*base, "--seed", "abc"), "train.seed must be an integer")
    _one_line_error(_run_cli("evaluate", "--data", str(toy_dataset), "--steps", "0"), "--steps must be a positive")
    _one_line_error(_run_cli("evaluate", "--data", str(toy_dataset), "--steps", "-3"), "--steps must be a positive")
    _one_line_error(_run_cli("evaluate", "--data", str(toy_dataset), "--steps", "99"), "use --steps 29 or fewer")
