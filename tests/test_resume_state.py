"""Resume restores every piece of run state: each test fails if one piece is lost.

An interrupted run (``stop_after``: a deterministic point, no timing) resumed
from its checkpoint must end bit-identical to an uninterrupted one. Each test
is built so that losing one piece of state changes the result:

- the LR scheduler's state (an ``ExponentialLR`` decays fast, so a fresh
  scheduler after resume steps at the wrong learning rate);
- a stateful estimator's state (``auto`` checks its band every 2nd step,
  counted in its state; ``emulator`` holds a network, its Adam state and its
  running check) and the probe generator it draws from;
- the dataset's content hash in the run hash (another dataset must be
  another run).
"""

from __future__ import annotations

import pytest
import torch

from sciml_zoo.config import ModelConfig, RunConfig, TrainConfig
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.runs import config_hash, load_checkpoint
from sciml_zoo.train.loop import train

SMALL = ModelConfig(width=8, kernel_size=3)


def _cfg(toy_dataset, **kw) -> RunConfig:
    base = dict(method="fo-sol", unroll=2, iterations=8, batch_size=2, lr=1e-2, checkpoint_every=3, seed=4)
    return RunConfig(str(toy_dataset), SMALL, TrainConfig(**{**base, **kw}))


def _split_and_full(tmp_path, toy_dataset, cfg: RunConfig, stop_after: int) -> tuple[dict, dict]:
    data = load_dataset(toy_dataset)
    train(cfg, tmp_path / "full", progress=False, data=data)
    train(cfg, tmp_path / "split", progress=False, data=data, stop_after=stop_after)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["iteration"] == stop_after
    train(cfg, tmp_path / "split", resume=True, progress=False, data=data)
    return load_checkpoint(tmp_path / "full" / "checkpoint.pt"), load_checkpoint(tmp_path / "split" / "checkpoint.pt")


def _assert_identical(full: dict, split: dict) -> None:
    assert [r["loss"] for r in split["log"]] == [r["loss"] for r in full["log"]]
    assert all(torch.equal(full["model"][k], split["model"][k]) for k in full["model"])
    assert split["solver_steps"] == full["solver_steps"]


def test_resume_keeps_the_lr_scheduler(tmp_path, toy_dataset):
    cfg = _cfg(toy_dataset, method="non", scheduler="ExponentialLR", scheduler_options={"gamma": 0.5})
    full, split = _split_and_full(tmp_path, toy_dataset, cfg, stop_after=4)
    assert split["scheduler"]["last_epoch"] == full["scheduler"]["last_epoch"] == 8
    assert split["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-2 * 0.5**8)
    _assert_identical(full, split)


@pytest.mark.parametrize(
    "estimator",
    [
        pytest.param({"estimator": "auto", "estimator_options": {"check_every": 2}}, id="auto"),
        pytest.param(
            {
                "estimator": "emulator",
                "estimator_options": {"check_every": 2, "width": 4, "depth": 2, "kernel_size": 3},
            },
            id="emulator",
        ),
        pytest.param(
            {
                "estimator": "emulator",
                "estimator_options": {"check_every": 2, "width": 4, "depth": 2, "kernel_size": 3, "tangent_weight": 1},
            },
            id="emulator-tangent",
        ),
        pytest.param(
            {
                "estimator": "emulator",
                "estimator_options": {"check_every": 2, "width": 4, "depth": 2, "kernel_size": 3, "shrink": True},
            },
            id="emulator-shrink",
        ),
        pytest.param(
            {
                "estimator": "sparse-cge",
                "estimator_options": {"sparsity": 0.9, "grasp_directions": 4, "redraw_every": 4},
            },
            id="sparse-cge",
        ),
    ],
)
def test_zo_sol_resume_with_a_stateful_estimator_is_bit_identical(tmp_path, toy_dataset, estimator):
    cfg = _cfg(toy_dataset, method="zo-sol", iterations=7, curriculum=False, **estimator)
    full, split = _split_and_full(tmp_path, toy_dataset, cfg, stop_after=3)
    assert split["gradient"].keys() == full["gradient"].keys()
    assert str(split["gradient"]) == str(full["gradient"])  # the estimator's state, counters included
    _assert_identical(full, split)


def test_the_run_hash_depends_on_the_dataset(toy_dataset):
    cfg = _cfg(toy_dataset)
    assert config_hash(cfg, "dataset-a") != config_hash(cfg, "dataset-b")
    assert config_hash(cfg, "dataset-a") == config_hash(cfg, "dataset-a")


def test_emulator_resume_across_curriculum_stages_is_bit_identical(tmp_path, toy_dataset):
    """Each stage starts from the earlier stage's emulator; a resume inside a later stage restores it exactly."""
    options = {"check_every": 2, "width": 4, "depth": 2, "kernel_size": 3}
    cfg = _cfg(toy_dataset, method="zo-sol", iterations=8, unroll=3, estimator="emulator", estimator_options=options)
    full, split = _split_and_full(tmp_path, toy_dataset, cfg, stop_after=6)
    stages = sorted(full["gradient"], key=int)
    assert len(stages) >= 2
    assert str(split["gradient"]) == str(full["gradient"])
    _assert_identical(full, split)
    last = full["gradient"][stages[-1]]["estimator"]
    assert last["layout"] is not None and last["fits"] < sum(full["gradient"][s]["estimator"]["fits"] for s in stages)
