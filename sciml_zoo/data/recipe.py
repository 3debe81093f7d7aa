"""Dataset recipes: which solver, which parameters, which resolutions, which split.

Recipes live as TOML tables (``[dataset]``) under ``datasets/``; this module
holds the frozen dataclass they fill and its validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sciml_zoo.errors import ConfigError
from sciml_zoo.solver import MAX_SPATIAL_DIMS

__all__ = ["DatasetRecipe"]


@dataclass(frozen=True)
class DatasetRecipe:
    """How to generate one reference dataset.

    Attributes:
        name: dataset name (used for the default file name).
        solver: registered solver name (``sciml-zoo solvers``).
        source_resolution: cells of the low-fidelity grid, ``(nx,)``,
            ``(nx, ny)`` or ``(nx, ny, nz)``.
        reference_resolution: cells of the high-fidelity grid, as many axes
            and at least as fine in each. The reference solver's
            ``restrict(state, source_resolution)`` maps its states onto the
            source grid; the default block average needs an integer ratio in
            every axis, a spectral restriction (KS) does not.
        param_names: names of the physical parameters (e.g. ``("re",)``).
        train_params: one parameter tuple per training simulation.
        test_params: one parameter tuple per test simulation.
        warmup_steps: reference steps run before the first kept frame, so that
            transients (e.g. the onset of vortex shedding) are over.
        num_frames: frames kept per simulation, one per source time step.
        seed: seed of the initial conditions.
        solver_options: options passed to the solver factory at both resolutions.
        reference_options: extra options for the reference solver only.
        source_options: extra options for the source solver only.
        checkpoint_every: reference steps between resumable checkpoints.
    """

    name: str
    solver: str
    source_resolution: tuple[int, ...]
    reference_resolution: tuple[int, ...]
    param_names: tuple[str, ...]
    train_params: tuple[tuple[float, ...], ...]
    test_params: tuple[tuple[float, ...], ...]
    warmup_steps: int = 0
    num_frames: int = 100
    seed: int = 0
    solver_options: dict[str, Any] = field(default_factory=dict)
    reference_options: dict[str, Any] = field(default_factory=dict)
    source_options: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        src, ref = tuple(self.source_resolution), tuple(self.reference_resolution)
        if not 1 <= len(src) <= MAX_SPATIAL_DIMS or len(ref) != len(src):
            raise ConfigError(
                f"source_resolution {list(src)} and reference_resolution {list(ref)} must list the same "
                f"number (1 to {MAX_SPATIAL_DIMS}) of cell counts, e.g. [32, 64] and [64, 128]"
            )
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (*src, *ref)) or min(*src, *ref) < 1:
            raise ConfigError(f"resolutions must be positive integers, got {list(src)} and {list(ref)}")
        if any(r < s for r, s in zip(ref, src, strict=True)):
            raise ConfigError(
                f"reference_resolution {list(ref)} must be at least as fine as source_resolution {list(src)} "
                "in every axis"
            )
        for label, rows in (("train_params", self.train_params), ("test_params", self.test_params)):
            if not rows:
                raise ConfigError(f"{label} is empty; list at least one parameter tuple")
            for row in rows:
                if len(row) != len(self.param_names):
                    raise ConfigError(
                        f"{label} entry {list(row)} has {len(row)} value(s) but param_names "
                        f"{list(self.param_names)} has {len(self.param_names)}"
                    )
        if self.num_frames < 2:
            raise ConfigError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.warmup_steps < 0 or self.checkpoint_every < 1:
            raise ConfigError("warmup_steps must be >= 0 and checkpoint_every >= 1")

    def solver_kwargs(self, which: str) -> dict[str, Any]:
        """Factory options for the ``"reference"`` or ``"source"`` solver."""
        extra = self.reference_options if which == "reference" else self.source_options
        res = self.reference_resolution if which == "reference" else self.source_resolution
        return {**self.solver_options, **extra, "resolution": tuple(res)}
