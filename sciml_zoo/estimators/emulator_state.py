"""The ``emulator`` estimator's per-run state: its keys and first values, and the checks a checkpoint passes.

Everything here is plain data (counters, floats, tensors) saved with the training checkpoint; a copy read back
is checked field by field before anything is built from it, so a damaged or foreign checkpoint is refused
with one line naming the field (:class:`~sciml_zoo.checkpoint.CheckpointFieldError`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sciml_zoo.checkpoint import CheckpointFieldError
from sciml_zoo.estimators.lagged_stencil import check_stencil_state
from sciml_zoo.nn.emulator import DTYPES

__all__ = ["INHERITED", "MODES", "check_emulator_state", "initial_emulator_state"]

MODES = ("emulator", "transpose", "stencil", "fallback")
"""The candidates an ``emulator`` estimator can have in use (``fallback``: none passed the check)."""
_COUNTERS = "steps fits checks failed_checks fallback_steps fallback_members nonfinite transpose_steps stencil_steps"
_RUNNING = ("check_error", "transpose_error", "stencil_error", "check_norm", "shrink_num", "shrink_den")
"""The held-out check's running sums (held_out.py)."""
INHERITED = ("layout", "emulator", "optimizer", "mode", "stencil", *_RUNNING)
"""What a curriculum's next stage takes over from the previous one: what was learned, not the counts."""


def initial_emulator_state() -> dict[str, Any]:
    """A fresh run's state: zero counts and running sums, nothing fitted yet, no candidate in use."""
    return {
        **dict.fromkeys(_COUNTERS.split(), 0),
        "mode": "fallback",  # the candidate in use: one of MODES
        **dict.fromkeys(("last_residual", *_RUNNING), 0.0),  # the check's last residual and running sums
        "layout": None,  # [channels, num_params, dim, the emulator's dtype ("float64")] once built
        "emulator": None,
        "optimizer": None,
        "probes": None,  # the last check's [state, params, directions, J r] for the tangent fit
        "stencil": None,  # the lagged stencil's running fit (lagged_stencil.py)
    }


def check_emulator_state(state: dict[str, Any]) -> None:
    """Refuse a checkpointed state whose mode, probes, stencil or layout is malformed (one line, the field)."""
    if state["mode"] not in MODES:
        raise CheckpointFieldError("mode", f"is {state['mode']!r}, not one of {', '.join(MODES)}")
    check_stencil_state(state["stencil"])
    probes = state["probes"]
    if probes is not None and (not isinstance(probes, list) or [type(t) for t in probes] != [Tensor] * 4):
        raise CheckpointFieldError("probes", "is not [state, params, directions, J r] tensors")
    layout = state["layout"]
    if layout is not None:
        if not (isinstance(layout, list) and len(layout) == 4 and all(isinstance(i, int) for i in layout[:3])):
            raise CheckpointFieldError("layout", f"is {layout!r}, not [channels, params, dim, dtype]")
        if layout[3] not in DTYPES:
            raise CheckpointFieldError("layout", f"names dtype {layout[3]!r}, not one of {', '.join(DTYPES)}")
