"""Exact resume after real signals: SIGINT, SIGTERM and kill -9 at random moments.

A ``sciml-zoo train`` subprocess is interrupted several times at random moments
during training and resumed each time; its final weights must be bit-identical
to an uninterrupted in-process run of the same config.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from sciml_zoo.runs import RunConfig, load_checkpoint
from sciml_zoo.train.config import ModelConfig, TrainConfig
from sciml_zoo.train.loop import train

METHODS = {
    "non": {"method": "non"},
    "fo-sol": {"method": "fo-sol"},
    # every registered estimator: all draw their randomness from the loop's own generator
    "zo-sol-stop-gradient": {"method": "zo-sol", "estimator": "stop-gradient", "estimator_options": {}},
    "zo-sol-identity": {"method": "zo-sol", "estimator": "identity", "estimator_options": {}},
    "zo-sol-state-rge": {"method": "zo-sol", "estimator": "state-rge", "estimator_options": {"num_directions": 2}},
    "zo-sol-identity-rge": {
        "method": "zo-sol",
        "estimator": "identity-rge",
        "estimator_options": {"num_directions": 2},
    },
    "zo-sol-stencil": {"method": "zo-sol", "estimator": "stencil", "estimator_options": {"kernel_size": 3}},
    "zo-sol-jacobian": {"method": "zo-sol", "estimator": "jacobian", "estimator_options": {}},
    "zo-sol-banded": {"method": "zo-sol", "estimator": "banded", "estimator_options": {"radius": 1}},
    "zo-sol-auto": {"method": "zo-sol", "estimator": "auto", "estimator_options": {"check_every": 5}},
    "zo-sol-rge": {"method": "zo-sol", "estimator": "weight-rge", "estimator_options": {"num_directions": 4}},
    "zo-sol-cge": {"method": "zo-sol", "estimator": "weight-cge", "estimator_options": {}},
    "zo-sol-sparse-cge": {
        "method": "zo-sol",
        "estimator": "sparse-cge",
        "estimator_options": {"sparsity": 0.95, "grasp_directions": 8, "redraw_every": 3},
    },
}


# every interrupted process must still be training when its signal arrives (up to 0.4 s after a
# checkpoint): a fixed iteration count was too short for the cheap methods on a fast machine (NON at
# 120 iterations took 0.3 s, stencil finished before its SIGTERM), so each method trains for at
# least this long, measured on this machine
MIN_TRAINING_S = 3.0


def _config(toy_dataset, key: str, iterations: int) -> RunConfig:
    train_cfg = TrainConfig(
        unroll=3, iterations=iterations, batch_size=2, lr=3e-3, checkpoint_every=7, seed=5, **METHODS[key]
    )
    return RunConfig(str(toy_dataset), ModelConfig(width=8, kernel_size=3), train_cfg)


def _iterations(tmp_path, toy_dataset, key: str) -> int:
    """Iterations that take at least ``MIN_TRAINING_S`` here (at least 120), from a timed short run."""
    train(_config(toy_dataset, key, 28), tmp_path / "timing", progress=False)
    log = load_checkpoint(tmp_path / "timing" / "checkpoint.pt")["log"]
    per_iteration = (log[-1]["wall_s"] - log[6]["wall_s"]) / (len(log) - 7)  # after the first checkpoint
    return max(120, math.ceil(MIN_TRAINING_S / max(per_iteration, 1e-6)))


def _cli_args(toy_dataset, key: str, out, iterations: int) -> list[str]:
    spec = METHODS[key]
    args = ["train", "--data", str(toy_dataset), "--out", str(out), "--quiet", "--method", spec["method"]]
    args += ["--unroll", "3", "--iterations", str(iterations), "--batch-size", "2", "--lr", "3e-3", "--seed", "5"]
    args += ["--set", "model.width=8", "--set", "model.kernel_size=3", "--set", "train.checkpoint_every=7"]
    if "estimator" in spec:
        args += ["--estimator", spec["estimator"]]
        args += [f"--set=train.estimator_options.{k}={v}" for k, v in spec["estimator_options"].items()]
    return args


def _interrupt_at_random(args: list[str], out, sig: int, rng: random.Random) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sciml_zoo.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    deadline = time.monotonic() + 60
    log = out / "log.csv"
    start = log.stat().st_mtime if log.exists() else 0.0
    while proc.poll() is None and time.monotonic() < deadline:  # wait until this process is training
        if log.exists() and log.stat().st_mtime > start:
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.4))
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 128 + sig:  # caught during training: one line, no traceback
        assert "Traceback" not in err.decode() and "progress was saved" in err.decode()
    else:  # 0: finished before the signal; -sig: it landed outside training (start-up, exit)
        assert proc.returncode in (0, -sig), err.decode()
    return proc.returncode


@pytest.mark.parametrize(
    "key",
    ["non", *(pytest.param(key, marks=pytest.mark.slow) for key in METHODS if key != "non")],
)
def test_signals_at_random_moments_then_resume_is_bit_identical(tmp_path, toy_dataset, key):
    rng = random.Random(sum(map(ord, key)))
    iterations = _iterations(tmp_path, toy_dataset, key)
    out = tmp_path / "interrupted"
    codes = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        codes.append(_interrupt_at_random(_cli_args(toy_dataset, key, out, iterations) + resume, out, sig, rng))
        if sig != signal.SIGKILL and (out / "checkpoint.pt").exists():
            ckpt = load_checkpoint(out / "checkpoint.pt")
            assert len(ckpt["log"]) == ckpt["iteration"]  # the checkpoint is one completed iteration
    assert sum(c in (128 + signal.SIGINT, 128 + signal.SIGTERM) for c in codes) >= 2, codes  # landed in training
    resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
    proc = subprocess.run(
        [sys.executable, "-m", "sciml_zoo.cli", *_cli_args(toy_dataset, key, out, iterations), *resume],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    train(_config(toy_dataset, key, iterations), tmp_path / "reference", progress=False)
    a = load_checkpoint(out / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "reference" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == iterations
    assert a["solver_steps"] == b["solver_steps"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    assert [r["loss"] for r in a["log"]] == [r["loss"] for r in b["log"]]
