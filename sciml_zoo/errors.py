"""User-facing error types.

Every mistake a user can make (a bad config key, a missing dataset, a corrupt
file, an adapter returning the wrong shape, a solver producing NaN) raises a
subclass of :class:`SciMLZooError` whose message names the problem and the fix.
The CLI prints such errors as one line and exits non-zero.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SciMLZooError",
    "ConfigError",
    "DataError",
    "SolverError",
    "QueryFailure",
    "DivergenceError",
    "check_positive_int",
]


class SciMLZooError(Exception):
    """Base class of errors caused by user input rather than by a bug."""


class ConfigError(SciMLZooError, ValueError):
    """A configuration file, flag or preset is invalid."""


class DataError(SciMLZooError, OSError):
    """A dataset or checkpoint is missing, corrupt, or inconsistent."""


class SolverError(SciMLZooError, RuntimeError):
    """A solver adapter misbehaved: wrong shape, NaN state, crash or hang."""


class QueryFailure(SolverError):
    """Solver queries failed after the fault policy's retries.

    Attributes:
        members: indices (into the batch the caller passed) of the failed
            batch members; empty means the whole call failed.
        last_error: one line describing the last error seen.
    """

    def __init__(self, message: str, *, members: tuple[int, ...] = (), last_error: str = "") -> None:
        super().__init__(message)
        self.members = tuple(members)
        self.last_error = last_error or message


class DivergenceError(SciMLZooError, FloatingPointError):
    """The network's loss or gradient became non-finite (lower the learning rate)."""


def check_positive_int(label: str, value: Any, *, optional: bool = False, hint: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int >= 1 (or None when ``optional``).

    ``bool`` is refused although it is an ``int``. ``hint`` is appended to the
    message (e.g. ``"; e.g. --steps 50"``).
    """
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        what = "a positive int or None" if optional else "a positive int"
        raise ConfigError(f"{label} must be {what}, got {value!r}{hint}")
