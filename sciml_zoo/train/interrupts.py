"""Re-export of :mod:`sciml_zoo.interrupts` (moved out of ``train/``: generation uses it too)."""

from __future__ import annotations

from sciml_zoo.interrupts import Interrupted, InterruptGuard, interruptible

__all__ = ["Interrupted", "InterruptGuard", "interruptible"]
