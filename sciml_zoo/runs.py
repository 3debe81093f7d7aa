"""A run directory: its config, the model it builds, checkpoints, its hash and its lock.

Layout of ``run_dir``: ``config.json`` (config, seed, versions, dataset, hash),
``checkpoint.pt`` (tensors + JSON, never pickled objects), ``log.csv``,
``summary.json`` (written when the run finished) and ``.lock`` (held by the
process writing the directory).

Checkpoint files (tensors + JSON, no pickle, checked field by field) are
read and written by :mod:`sciml_zoo.checkpoint`, re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from sciml_zoo.checkpoint import CHECKPOINT_FORMAT, CheckpointFieldError, check_like, load_checkpoint, save_checkpoint
from sciml_zoo.config import ModelConfig, RunConfig
from sciml_zoo.config_io import from_dict
from sciml_zoo.data.loading import Dataset
from sciml_zoo.errors import ConfigError, DataError
from sciml_zoo.nn import CorrectionNet, Normalization, build_body
from sciml_zoo.paths import file_lock, make_tool_dir
from sciml_zoo.provenance import environment, to_jsonable

__all__ = [
    "RunConfig",
    "CHECKPOINT_FORMAT",
    "build_model",
    "load_model",
    "save_checkpoint",
    "load_checkpoint",
    "config_hash",
    "run_lock",
    "clean_stale_temp_files",
]


def build_model(config: ModelConfig, data: Dataset, *, seed: int) -> CorrectionNet:
    """A freshly initialised correction network, normalised with the training split only."""
    torch.manual_seed(seed)
    c, p = data.train.states.shape[2], data.train.params.shape[1]
    body = build_body(
        config.arch,
        c + p,
        c,
        dim=data.spatial_dims,
        width=config.width,
        kernel_size=config.kernel_size,
        blocks=config.blocks,
        depth=config.depth,
        activation=config.activation,
        padding_mode=config.padding,
    )
    norm = Normalization.from_training_data(data.train.states, data.train.params, data.mask)
    return CorrectionNet(body, norm, data.mask, zero_mean=config.zero_mean)


def load_model(run_dir: str | Path, data: Dataset) -> CorrectionNet:
    """Load the latest weights of a training run (its ``checkpoint.pt``)."""
    ckpt = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    model = build_model(from_dict(ModelConfig, ckpt["config"]["model"], where="[model]"), data, seed=0)
    try:
        check_like("model", ckpt.get("model"), model.state_dict())
    except CheckpointFieldError as exc:
        raise DataError(
            f"run {str(run_dir)!r} does not fit dataset {data.attrs.get('path', '?')!r} or its checkpoint is "
            f"corrupt ({exc}); evaluate it on the dataset it was trained on"
        ) from None
    model.load_state_dict(ckpt["model"])
    return model


def config_hash(config: RunConfig, dataset_hash: str) -> str:
    """A hash of everything that determines a run's result.

    The full config (the dataset path excluded: the dataset enters by its
    content hash), the dataset hash and the versions of the packages the numbers
    depend on.
    """
    env = environment()["packages"]
    record = {
        "config": {k: v for k, v in to_jsonable(config).items() if k != "data"},
        "dataset": dataset_hash,
        "versions": {k: env.get(k) for k in ("sciml-zoo", "torch")},
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while writing the directory; a second writer gets one clear line.

    The lock is an ``flock``: the kernel releases it when the process dies, even
    by ``kill -9``, so a crashed run never leaves the directory locked.

    A ``.lock`` that is a symbolic link (or not a regular file) is refused, never
    written through. A ``run_dir`` this call creates gets the tool's marker
    (:func:`sciml_zoo.paths.make_tool_dir`), which ``--force`` requires.
    """
    run_dir = Path(run_dir)
    try:
        make_tool_dir(run_dir)  # marked as the tool's own only if this call creates it
    except OSError as exc:
        raise ConfigError(
            f"cannot write run directory {str(run_dir)!r} ({exc.strerror}); choose another --out"
        ) from None
    with file_lock(run_dir / ".lock", what=f"run directory {str(run_dir)!r}"):
        yield


def clean_stale_temp_files(directory: str | Path) -> list[Path]:
    """Remove ``.*.tmp`` files that killed atomic writes left in ``directory``.

    Call it only while holding the directory's lock (no writer is active).
    """
    removed = []
    directory = Path(directory)
    if directory.is_dir():
        for tmp in directory.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
