"""Checkpoint files: tensors + JSON values, never pickled objects, checked field by field.

A checkpoint is one ``torch.save`` of a dict holding only tensors, dicts, lists,
tuples, strings, numbers, booleans and ``None``, read back with
``torch.load(weights_only=True)``: a file holding any other object is refused
before anything in it runs. What a field must hold is checked against the
object it is loaded into (:func:`check_like`, :func:`check_count`, ...): each
problem is one :class:`~sciml_zoo.errors.DataError` line naming the field, never
a traceback from deep inside ``load_state_dict``.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor

from sciml_zoo.errors import DataError
from sciml_zoo.provenance import atomic_path

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointFieldError",
    "save_checkpoint",
    "load_checkpoint",
    "check_like",
    "check_count",
    "check_number",
    "check_plain",
    "check_optimizer_state",
]

CHECKPOINT_FORMAT = "sciml-zoo-checkpoint/2"
"""Written into every checkpoint; a checkpoint without it predates the safe format."""


class CheckpointFieldError(DataError):
    """One field of a checkpoint is missing or holds the wrong thing; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field} {problem}")
        self.field, self.problem = field, problem


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (tensors and JSON types only) as a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without executing anything in it; check its envelope.

    The envelope is the format tag, ``config`` (a table) and ``hash`` (a
    string); the fields of the run's state are checked by whoever loads them
    (:meth:`sciml_zoo.train.state.TrainState.load_state_dict`).

    Raises:
        DataError: missing, not a checkpoint, torn or corrupt, holding objects
            other than tensors and plain data (refused: unpickling them could
            run code), or older than the safe format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} not found; train first with `sciml-zoo train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # random bytes, a text file, a torn legacy pickle
            raise DataError(
                f"checkpoint {str(path)!r} is not a sciml-zoo checkpoint (unreadable or corrupt); "
                "delete the run directory and retrain"
            ) from None
        what = str(exc).split("Unsupported global:")[-1].split(".")[0].strip()
        raise DataError(
            f"checkpoint {str(path)!r} holds objects other than tensors and plain data"
            f"{f' ({what})' if what else ''}; refused, because loading it could run code. "
            "Only open checkpoints written by sciml-zoo >= 0.2, or retrain"
        ) from None
    except Exception as exc:  # torch raises many types for a torn/corrupt file
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":  # not even torch's zip container: random bytes, another format
                raise DataError(
                    f"checkpoint {str(path)!r} is not a sciml-zoo checkpoint (unreadable or corrupt); "
                    "delete the run directory and retrain"
                ) from None
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"checkpoint {str(path)!r} is corrupt ({msg}); delete the run directory and retrain") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format", "none") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DataError(
            f"checkpoint {str(path)!r} has format {found!r}, not {CHECKPOINT_FORMAT!r}: it was written by an "
            "older sciml-zoo; delete the run directory and retrain (or pass --force to compare)"
        )
    try:
        if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt["config"].get("model"), dict):
            _fail("config", f"must be a table with a [model] table, got {_kind(ckpt.get('config'))}")
        if "hash" in ckpt and not isinstance(ckpt["hash"], str):
            _fail("hash", f"must be a string, got {_kind(ckpt['hash'])}")
    except CheckpointFieldError as exc:
        raise DataError(f"checkpoint {str(path)!r} is corrupt: {exc}; delete the run directory and retrain") from None
    return ckpt


# -- field checks --------------------------------------------------------------------------------


def _fail(field: str, problem: str) -> NoReturn:
    raise CheckpointFieldError(field, problem)


def _kind(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _child(field: str, key: Any) -> str:
    return f"{field}.{key}" if isinstance(key, str) else f"{field}[{key!r}]"


def check_count(field: str, value: Any, *, high: int | None = None) -> int:
    """``value`` is an int >= 0 (and <= ``high``); returns it."""
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(field, f"must be an integer, got {_kind(value)}")
    if value < 0 or (high is not None and value > high):
        _fail(field, f"must be in [0, {high}], got {value}" if high is not None else f"must be >= 0, got {value}")
    return value


def check_number(field: str, value: Any) -> float:
    """``value`` is a finite number >= 0; returns it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        _fail(field, f"must be a finite number >= 0, got {_kind(value)}")
    return float(value)


def check_plain(field: str, value: Any) -> None:
    """``value`` holds only tensors and JSON values (what ``weights_only`` loads)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                _fail(field, f"has a key {key!r} that is neither a string nor an integer")
            check_plain(_child(field, key), item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(f"{field}[{i}]", item)
    elif not (value is None or isinstance(value, (Tensor, str, int, float, bool))):
        _fail(field, f"holds {_kind(value)}, not a tensor or plain value")


def check_like(field: str, value: Any, reference: Any, *, extra_keys: bool = False) -> None:
    """``value`` has the structure of ``reference`` (what a fresh object's ``state_dict()`` holds).

    Tensors: a tensor of the same shape and dtype. Numbers, strings, booleans:
    the same kind (an int where a float is expected is fine). Tables: every
    key of ``reference`` (``extra_keys``: others allowed too, e.g. an
    estimator's fit made during training); an empty reference table or list,
    or ``None``, accepts any plain value.
    """
    if reference is None:
        check_plain(field, value)
    elif isinstance(reference, Tensor):
        if not isinstance(value, Tensor):
            _fail(field, f"must be a tensor of shape {tuple(reference.shape)}, got {_kind(value)}")
        if value.shape != reference.shape or value.dtype != reference.dtype:
            _fail(
                field,
                f"has shape {tuple(value.shape)} and dtype {value.dtype}, expected "
                f"{tuple(reference.shape)} and {reference.dtype}",
            )
    elif isinstance(reference, bool):
        if not isinstance(value, bool):
            _fail(field, f"must be true or false, got {_kind(value)}")
    elif isinstance(reference, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(field, f"must be a number, got {_kind(value)}")
        if isinstance(reference, int) and not isinstance(value, int):
            _fail(field, f"must be an integer, got {_kind(value)}")
    elif isinstance(reference, str):
        if not isinstance(value, str):
            _fail(field, f"must be a string, got {_kind(value)}")
    elif isinstance(reference, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            _fail(field, f"must be a list, got {_kind(value)}")
        if reference and len(value) != len(reference):
            _fail(field, f"has {len(value)} entries, expected {len(reference)}")
        for i, item in enumerate(value):
            check_like(f"{field}[{i}]", item, reference[i] if reference else None, extra_keys=extra_keys)
    elif isinstance(reference, Mapping):
        if not isinstance(value, Mapping):
            _fail(field, f"must be a table, got {_kind(value)}")
        if not reference:
            check_plain(field, value)
            return
        missing = [k for k in reference if k not in value]
        if missing:
            _fail(field, f"lacks key(s) {', '.join(map(repr, missing))}")
        unknown = [k for k in value if k not in reference]
        if unknown and not extra_keys:
            _fail(field, f"has unknown key(s) {', '.join(map(repr, unknown))}")
        for key, item in value.items():
            check_like(_child(field, key), item, reference.get(key), extra_keys=extra_keys)
    else:
        check_plain(field, value)


def check_optimizer_state(field: str, value: Any, optimizer: torch.optim.Optimizer) -> None:
    """``value`` can be loaded into ``optimizer`` (a ``torch.optim`` optimizer of the same parameters).

    Its ``param_groups`` have the structure of the optimizer's own (same
    options, same parameter indices); every per-parameter state belongs to one
    of its parameters, and each tensor in it of one or more dimensions (Adam's
    moments, SGD's momentum) has that parameter's shape. ``load_state_dict``
    itself checks none of this: a wrong shape would fail at the next step.
    """
    reference = optimizer.state_dict()
    check_like(field, value, reference)
    for i, (group, ref) in enumerate(zip(value["param_groups"], reference["param_groups"], strict=True)):
        if list(group["params"]) != list(ref["params"]):
            _fail(f"{field}.param_groups[{i}].params", f"must be {ref['params']}")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, per_param in value["state"].items():
        where = f"{field}.state[{key!r}]"
        if not isinstance(key, int) or not 0 <= key < len(params) or not isinstance(per_param, Mapping):
            _fail(where, "is not the state of one of the parameters")
        for name, item in per_param.items():
            if isinstance(item, Tensor) and item.dim() > 0 and item.shape != params[key].shape:
                _fail(f"{where}.{name}", f"has shape {tuple(item.shape)}, expected {tuple(params[key].shape)}")
            if not isinstance(item, (Tensor, int, float)) and item is not None:
                _fail(f"{where}.{name}", f"must be a tensor or a number, got {_kind(item)}")
