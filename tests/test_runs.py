"""Run directories: safe checkpoints, locks, stale temp files, divergence, faults, configs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sciml_zoo.config import ModelConfig, TrainConfig, curriculum_stages
from sciml_zoo.config_io import apply_overrides
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.errors import ConfigError, DataError, DivergenceError, QueryFailure, SolverError
from sciml_zoo.experiment import load_run_config
from sciml_zoo.registry import _RUNTIME, register
from sciml_zoo.runs import RunConfig, build_model, clean_stale_temp_files, load_checkpoint, run_lock
from sciml_zoo.train.loop import train
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

SMALL = ModelConfig(width=8, kernel_size=3)


def _cfg(toy_dataset, **kw) -> RunConfig:
    base = dict(method="fo-sol", unroll=3, iterations=6, batch_size=2, lr=3e-3, checkpoint_every=3, seed=3)
    return RunConfig(str(toy_dataset), SMALL, TrainConfig(**{**base, **kw}))


class _Touch:
    """Unpickling this calls ``Path.touch(target)``: a stand-in for any code a pickle can run."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def _evil_run(tmp_path: Path, toy_dataset: Path, target: Path) -> Path:
    run = tmp_path / "evil"
    train(_cfg(toy_dataset, iterations=1), run, progress=False)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["log"] = [_Touch(target)]  # the payload, inside an otherwise valid checkpoint
    torch.save(ckpt, run / "checkpoint.pt")
    assert not target.exists()
    return run


def test_checkpoints_hold_only_tensors_and_plain_data(tmp_path, toy_dataset):
    train(_cfg(toy_dataset, iterations=2, scheduler="StepLR", scheduler_options={"step_size": 1}), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # would raise on any other object
    assert ckpt["format"] == "sciml-zoo-checkpoint/2" and ckpt["generator"].dtype == torch.uint8


def test_malicious_checkpoint_runs_nothing(tmp_path, toy_dataset):
    target = tmp_path / "pwned"
    run = _evil_run(tmp_path, toy_dataset, target)
    with pytest.raises(DataError, match="refused, because loading it could run code"):
        load_checkpoint(run / "checkpoint.pt")
    for args in (
        ["evaluate", "--data", str(toy_dataset), str(run), "--steps", "3"],
        ["train", "--data", str(toy_dataset), "--out", str(run), "--resume", "--method", "fo-sol", "--quiet"],
    ):
        proc = subprocess.run([sys.executable, "-m", "sciml_zoo.cli", *args], capture_output=True, text=True)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and "refused" in lines[0], proc.stderr
    assert not target.exists()


def test_old_format_checkpoint_gets_a_clear_message(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "iteration": 3}, path)
    with pytest.raises(DataError, match="older sciml-zoo"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps([1, 2]) + b"junk")
    with pytest.raises(DataError, match="corrupt|refused|older"):
        load_checkpoint(path)


def test_a_second_writer_gets_one_clear_line(tmp_path):
    with run_lock(tmp_path / "run"):
        code = f"from sciml_zoo.runs import run_lock\nwith run_lock({str(tmp_path / 'run')!r}): pass"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert "is being written by another process" in proc.stderr
        with pytest.raises(ConfigError, match="another process"):
            with run_lock(tmp_path / "run"):
                pass
    with run_lock(tmp_path / "run"):  # released
        pass


def test_stale_temp_files_are_cleaned_at_start(tmp_path, toy_dataset):
    run = tmp_path / "run"
    run.mkdir()
    orphan = run / ".checkpoint.pt.abc123.tmp"
    orphan.write_bytes(b"x" * 100)
    train(_cfg(toy_dataset, iterations=1), run, progress=False)
    assert not orphan.exists()
    assert clean_stale_temp_files(tmp_path / "missing") == []


def test_divergence_stops_at_once_and_keeps_a_finite_checkpoint(tmp_path, toy_dataset):
    cfg = _cfg(toy_dataset, method="non", iterations=50, optimizer="SGD", lr=1e30, checkpoint_every=1)
    with pytest.raises(DivergenceError, match=r"diverged at iteration \d+ .*train\.lr.*train\.grad_clip") as info:
        train(cfg, tmp_path, progress=False)
    assert str(tmp_path / "checkpoint.pt") in str(info.value)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert ckpt["iteration"] < 50 and not (tmp_path / "summary.json").exists()


def _sgd_update_norm(run_dir: Path, toy_dataset: Path, cfg: RunConfig) -> float:
    """The L2 norm of one plain-SGD step at lr 1: the (clipped) gradient's norm."""
    model = build_model(cfg.model, load_dataset(toy_dataset), seed=cfg.train.seed)  # the loop's initial weights
    after = load_checkpoint(run_dir / "checkpoint.pt")["model"]
    deltas = [after[name] - p.detach() for name, p in model.named_parameters()]
    return float(torch.linalg.vector_norm(torch.cat([d.flatten() for d in deltas])))


def test_grad_clip_is_applied(tmp_path, toy_dataset):
    kw = dict(method="non", iterations=1, optimizer="SGD", lr=1.0, checkpoint_every=1)
    clipped, free = _cfg(toy_dataset, grad_clip=1e-3, **kw), _cfg(toy_dataset, **kw)
    train(clipped, tmp_path / "clipped", progress=False)
    train(free, tmp_path / "free", progress=False)
    assert _sgd_update_norm(tmp_path / "clipped", toy_dataset, clipped) == pytest.approx(1e-3, rel=1e-4)
    assert _sgd_update_norm(tmp_path / "free", toy_dataset, free) > 1e-2  # so the clip had work to do


class _FlakyToy(ToyDiffusion):
    """Fails the batched calls listed in ``fail_calls`` and member 1's retry after each (all calls if None).

    With ``retries=1`` the fault policy retries each member of a failed call alone: member 0's retry (the
    next call) succeeds, member 1's (the one after) fails again, so member 1 is dropped from that iteration.
    """

    name = "flaky-toy"
    calls = 0
    fail_calls: set[int] | None = {2, 8}

    def step(self, state, params):
        type(self).calls += 1
        call = type(self).calls
        if self.fail_calls is None:
            if len(state) > 1:
                raise QueryFailure("member 1 timed out", members=(1,), last_error="timeout after 1 s")
        elif call in self.fail_calls or call - 2 in self.fail_calls:
            raise QueryFailure("member 1 timed out", members=(1,), last_error="timeout after 1 s")
        if self.fail_calls is None:
            raise QueryFailure("all failed", last_error="worker died")
        return super().step(state, params)


@pytest.fixture()
def flaky_solver():
    _FlakyToy.calls = 0
    register("toy-diffusion", lambda **kw: _FlakyToy(**kw))
    yield _FlakyToy
    _RUNTIME.pop("toy-diffusion")


def test_failed_members_are_dropped_and_counted(tmp_path, toy_dataset, flaky_solver):
    summary = train(_cfg(toy_dataset, method="non", iterations=6, retries=1), tmp_path, progress=False)
    assert summary["iterations_done"] == 6
    assert summary["faults"]["dropped_members"] == 2 and summary["faults"]["skipped_iterations"] == 0
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert "dropped_members" in log[0]
    # a dropped member costs its query, the redo the rest: 6 iterations x 2 + 2 failed calls x 2 - 0
    assert summary["train_solver_steps"] == 6 * 2 + 2 * 2 + 2 * 1 - 2 * 2


def test_consecutive_failed_iterations_stop_with_one_line(tmp_path, toy_dataset, flaky_solver):
    flaky_solver.fail_calls = None
    try:
        with pytest.raises(SolverError, match=r"flaky-toy.*3 iterations in a row.*worker died.*--resume"):
            train(
                _cfg(toy_dataset, method="non", iterations=6, max_consecutive_failures=3, retries=1),
                tmp_path,
                progress=False,
            )
    finally:
        flaky_solver.fail_calls = {2, 8}
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["iteration"] == 3 and ckpt["fault_counts"]["skipped_iterations"] == 3


def test_curriculum_grows_the_unroll_in_equal_shares(tmp_path, toy_dataset):
    assert curriculum_stages(4) == [1, 2, 4] and curriculum_stages(6) == [1, 2, 4, 6] and curriculum_stages(1) == [1]
    cfg = TrainConfig(unroll=4, iterations=9, curriculum=True)
    assert [cfg.unroll_at(i) for i in range(9)] == [1, 1, 1, 2, 2, 2, 4, 4, 4]
    summary = train(_cfg(toy_dataset, unroll=4, iterations=6, curriculum=True), tmp_path, progress=False)
    assert summary["train_solver_steps"] == 2 * 2 * (1 + 2 + 4)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"batch_size": 1.5}, "train.batch_size must be an integer"),
        ({"iterations": 10.0}, "train.iterations must be an integer"),
        ({"seed": "abc"}, "train.seed must be an integer"),
        ({"lr": "abc"}, "train.lr must be a number"),
        ({"estimator_options": 5}, "train.estimator_options must be a table"),
        ({"executor": "slurm"}, "train.executor must be one of local, process, dask"),
        ({"scheduler_address": "tcp://x:1"}, "needs train.executor"),
        ({"grad_clip": -1.0}, "train.grad_clip must be > 0"),
        ({"max_consecutive_failures": 0}, "max_consecutive_failures must be >= 1"),
        ({"device": "gpu"}, "train.device"),
    ],
)
def test_bad_run_fields_name_the_key(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_one_override_syntax_with_nested_keys(tmp_path):
    raw = apply_overrides({"train": {"lr": 1.0}}, ["train.estimator_options.mu=1e-3", "methods.zo-sol.estimator=x"])
    assert raw == {"train": {"lr": 1.0, "estimator_options": {"mu": 1e-3}}, "methods": {"zo-sol": {"estimator": "x"}}}
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('data = "d.h5"\n[train]\nmethod = "non"\n[model]\nwidth = 4\n')
    rc = load_run_config(cfg_file, ["train.optimizer_options.weight_decay=0.1", "model.width=6", "data=e.h5"])
    assert rc.data == "e.h5" and rc.model.width == 6 and rc.train.optimizer_options == {"weight_decay": 0.1}
    with pytest.raises(ConfigError, match="is a value, not a table"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=1"])
    with pytest.raises(ConfigError, match="no dataset given"):
        load_run_config(None, ["train.method=non"])


def test_summary_and_log_record_counts_and_hash(tmp_path, toy_dataset):
    train(_cfg(toy_dataset, iterations=2), tmp_path, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["faults"]) >= {"failures", "retries", "timeouts", "restarts", "dropped_members"}
    assert len(summary["hash"]) == 16 and json.loads((tmp_path / "config.json").read_text())["hash"] == summary["hash"]


def test_log_row_adds_counts_and_takes_the_gauges_of_the_stage_in_use():
    """One gradient source per unroll length, in the order used: fallbacks add up, levels are the last stage's."""
    from sciml_zoo.train.queries import FaultCounts

    class Source:
        def __init__(self, **stats):
            self._stats = stats

        def stats(self):
            return self._stats

    row = FaultCounts().row(
        [Source(radius=2, last_residual=0.1, fallback_steps=1), Source(radius=4, last_residual=0.05, fallback_steps=2)]
    )
    assert row["radius"] == 4 and row["last_residual"] == 0.05 and row["fallback_steps"] == 3  # the stage in use
    row = FaultCounts().row([Source(trusted=1, shrink_factor=1.0, checks=2), Source(trusted=0, shrink_factor=0.3)])
    assert row["trusted"] == 0 and row["shrink_factor"] == 0.3 and row["checks"] == 2  # not a finished stage's


def test_the_curriculum_is_the_default_for_sol_and_ignored_by_non():
    sol, non = TrainConfig(method="zo-sol", unroll=8, iterations=8), TrainConfig(method="non", unroll=8, iterations=8)
    assert [sol.unroll_at(i) for i in range(8)] == [1, 1, 2, 2, 4, 4, 8, 8]
    assert {non.unroll_at(i) for i in range(8)} == {1}
    assert TrainConfig(method="fo-sol", unroll=8, curriculum=False).unroll_at(0) == 8
