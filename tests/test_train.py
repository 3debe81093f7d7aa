"""Training: each method lowers the loss, resume is exact, configs are checked."""

from __future__ import annotations

import json

import pytest
import torch

from sciml_zoo import ConfigError
from sciml_zoo.config import ModelConfig, TrainConfig
from sciml_zoo.data.loading import load_dataset
from sciml_zoo.runs import RunConfig
from sciml_zoo.train.loop import train

SMALL = ModelConfig(width=8, kernel_size=3)


def _cfg(toy_dataset, **kw) -> RunConfig:
    # a fixed unroll (no curriculum): first and last losses measure the same objective
    base = dict(
        method="fo-sol", unroll=3, iterations=8, batch_size=2, lr=3e-3, checkpoint_every=4, seed=3, curriculum=False
    )
    return RunConfig(str(toy_dataset), SMALL, TrainConfig(**{**base, **kw}))


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


@pytest.mark.parametrize("method", ["non", "fo-sol"])
def test_training_lowers_the_loss(tmp_path, toy_dataset, method):
    summary = train(
        _cfg(toy_dataset, method=method, iterations=40, checkpoint_every=40),
        tmp_path,
        progress=False,
    )
    log = (tmp_path / "log.csv").read_text().splitlines()[1:]
    losses = [float(row.split(",")[1]) for row in log]
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:8]) / 8
    steps = 1 if method == "non" else 3
    assert summary["train_solver_steps"] == 40 * 2 * steps


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, toy_dataset):
    cfg = _cfg(toy_dataset)
    train(cfg, tmp_path / "full", progress=False)
    data = load_dataset(toy_dataset)
    train(cfg, tmp_path / "split", progress=False, data=data, stop_after=5)  # interrupted after 5
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["iteration"] == 5
    train(cfg, tmp_path / "split", resume=True, progress=False, data=data)
    full, split = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert all(torch.equal(full[k], split[k]) for k in full)
    assert (tmp_path / "split" / "log.csv").read_text().count("\n") == 9  # header + 8 rows


def test_interrupt_saves_a_checkpoint_and_resume_continues(tmp_path, toy_dataset, monkeypatch):
    import sciml_zoo.train.loop as loop

    cfg = _cfg(toy_dataset, checkpoint_every=100)
    original = loop.WindowSampler.sample
    calls = {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(loop.WindowSampler, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", progress=False)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["iteration"] == 3
    monkeypatch.setattr(loop.WindowSampler, "sample", original)
    train(cfg, tmp_path / "run", resume=True, progress=False)
    train(cfg, tmp_path / "ref", progress=False)
    a, b = _weights(tmp_path / "run"), _weights(tmp_path / "ref")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_run_directory_records_config_seed_and_versions(tmp_path, toy_dataset):
    train(_cfg(toy_dataset, iterations=2), tmp_path, progress=False)
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["seed"] == 3
    assert record["config"]["train"]["method"] == "fo-sol"
    assert record["versions"]["packages"]["torch"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["iterations_done"] == 2 and summary["train_wall_s"] > 0


def test_refuses_to_overwrite_a_run_and_to_resume_a_different_config(tmp_path, toy_dataset):
    train(_cfg(toy_dataset, iterations=2), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(_cfg(toy_dataset, iterations=2), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different config"):
        train(_cfg(toy_dataset, iterations=2, lr=1.0), tmp_path, resume=True, progress=False)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"method": "sol"}, "train.method"),
        ({"method": "zo-sol", "estimator_options": {"radius": -1}}, "estimator"),  # no estimator = auto (issue 9)
        ({"method": "zo-sol", "estimator": "magic"}, "estimator"),
        ({"optimizer": "Adamm"}, "torch.optim"),
        ({"unroll": 0}, ">= 1"),
    ],
)
def test_bad_train_config_names_the_problem(kw, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kw)


def test_normalisation_uses_training_simulations_only(toy_dataset):
    from sciml_zoo.runs import build_model

    data = load_dataset(toy_dataset)
    norm = build_model(SMALL, data, seed=0).norm
    train_states = data.train.states
    torch.testing.assert_close(norm.state_std, train_states.std().reshape(1))
    torch.testing.assert_close(norm.param_mean, data.train.params.mean(0))
    torch.testing.assert_close(norm.param_std, data.train.params.std(0))
    all_params = torch.cat([data.train.params, data.test.params])
    all_states = torch.cat([data.train.states, data.test.states])
    assert not torch.allclose(norm.param_std, all_params.std(0))  # test sims would change it
    assert not torch.allclose(norm.state_std, all_states.std().reshape(1))
