"""Ctrl-C and SIGTERM as one path, with sections they cannot cut in half.

A cluster scheduler stops a job with SIGTERM, a user with Ctrl-C (SIGINT).
Inside :func:`interruptible` both raise :class:`Interrupted` (a
``KeyboardInterrupt``), so the training loop has a single way to save and stop.
Inside :meth:`InterruptGuard.critical` (the optimizer step, the bookkeeping, a
checkpoint write) a signal is held back until the section ends, so the state
the loop saves is always the one of a completed iteration. Dataset generation
(:mod:`sciml_zoo.data.generate`) uses the same guard for its steps, which is
why this module lives outside ``train/`` (re-exported as ``sciml_zoo.train.interrupts``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Interrupted", "InterruptGuard", "interruptible"]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class InterruptGuard:
    """Turns SIGINT/SIGTERM into :class:`Interrupted`, deferred inside :meth:`critical`."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = signum
            return
        raise Interrupted(signum)

    @contextmanager
    def critical(self) -> Iterator[None]:
        """Hold signals back while the block runs; raise the held one at its end."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[InterruptGuard]:
    """Install the guard's handlers for SIGINT and SIGTERM (main thread only) and restore them after."""
    guard = InterruptGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard  # signals are delivered to the main thread only; nothing to install
        return
    previous = {sig: signal.signal(sig, guard.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
