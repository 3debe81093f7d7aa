"""A run directory: its config, the model it builds, checkpoints, its hash and its lock.

Layout of ``run_dir``: ``config.json`` (config, seed, versions, dataset, hash),
``checkpoint.pt`` (tensors + JSON, never pickled objects), ``log.csv``,
``summary.json`` (written when the run finished) and ``.lock`` (held by the
process writing the directory).

Checkpoints are loaded with ``torch.load(weights_only=True)``: tensors, dicts,
lists, tuples, strings, numbers, booleans and ``None`` only. A file holding any
other object is refused before anything in it runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from sciml_zoo.config import ModelConfig, RunConfig
from sciml_zoo.config_io import from_dict
from sciml_zoo.data.loading import Dataset
from sciml_zoo.errors import ConfigError, DataError
from sciml_zoo.nn import CorrectionNet, Normalization, build_body
from sciml_zoo.paths import file_lock, make_tool_dir
from sciml_zoo.provenance import atomic_path, environment, to_jsonable

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

CHECKPOINT_FORMAT = "sciml-zoo-checkpoint/2"
"""Written into every checkpoint; a checkpoint without it predates the safe format."""


def build_model(config: ModelConfig, data: Dataset, *, seed: int) -> CorrectionNet:
    """A freshly initialised correction network, normalised with the training split only."""
    torch.manual_seed(seed)
    c, p = data.train.states.shape[2], data.train.params.shape[1]
    options: dict[str, Any] = {
        "width": config.width,
        "kernel_size": config.kernel_size,
        "blocks": config.blocks,
        "padding_mode": config.padding,
    }
    for name in ("depth", "activation"):  # ModelConfig fields of N-D networks, when present
        if hasattr(config, name):
            options[name] = getattr(config, name)
    if "dim" in inspect.signature(build_body).parameters:
        options["dim"] = data.spatial_dims
    body = build_body(config.arch, c + p, c, **options)
    norm = Normalization.from_training_data(data.train.states, data.train.params, data.mask)
    return CorrectionNet(body, norm, data.mask, zero_mean=config.zero_mean)


def load_model(run_dir: str | Path, data: Dataset) -> CorrectionNet:
    """Load the latest weights of a training run (its ``checkpoint.pt``)."""
    ckpt = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    model = build_model(from_dict(ModelConfig, ckpt["config"]["model"], where="[model]"), data, seed=0)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(
            f"run {str(run_dir)!r} does not fit dataset {data.attrs.get('path', '?')!r} "
            f"({first[1].strip() if len(first) > 1 else first[0]}); evaluate it on the dataset it was trained on"
        ) from exc
    return model


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors and JSON types only) as a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without executing anything in it.

    Raises:
        DataError: missing, corrupt, holding objects other than tensors and
            plain data (refused: unpickling them could run code), or older
            than the safe format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} not found; train first with `sciml-zoo train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = str(exc).split("Unsupported global:")[-1].split(".")[0].strip() if "global" in str(exc) else ""
        raise DataError(
            f"checkpoint {str(path)!r} holds objects other than tensors and plain data"
            f"{f' ({what})' if what else ''}; refused, because loading it could run code. "
            "Only open checkpoints written by sciml-zoo >= 0.2, or retrain"
        ) from None
    except Exception as exc:  # torch raises many types for a torn/corrupt file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"checkpoint {str(path)!r} is corrupt ({msg}); delete the run directory and retrain") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format", "none") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DataError(
            f"checkpoint {str(path)!r} has format {found!r}, not {CHECKPOINT_FORMAT!r}: it was written by an "
            "older sciml-zoo; delete the run directory and retrain (or pass --force to compare)"
        )
    return ckpt


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
