"""Training methods as objects: NON, FO-SOL and ZO-SOL, with one registry.

A method says what it needs from the solver and how its training windows are
built, so the modules that train, compare or plan ask the method instead of
testing its name (``method == "fo-sol"``):

- :data:`NON` (Um et al. 2020's "non-interacting"): one black-box solver step
  from reference states; the correction network is trained on single steps
  (no unroll, no curriculum).
- :data:`FO_SOL`: Solver-in-the-Loop with a differentiable solver, unrolled
  ``n`` steps; needs ``capabilities.differentiable``.
- :data:`ZO_SOL`: Solver-in-the-Loop through the black-box solver, its
  gradient from a zeroth-order estimator (:mod:`sciml_zoo.estimators`).

``TrainConfig.method`` stays the registry name (configs, TOML files, hashes
and checkpoints record it as a string); :attr:`TrainConfig.method_spec
<sciml_zoo.config.TrainConfig.method_spec>` is the object.
"""

from __future__ import annotations

from dataclasses import dataclass

from sciml_zoo.errors import ConfigError

__all__ = ["Method", "NON", "FO_SOL", "ZO_SOL", "METHODS", "get_method"]


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: registry name (``train.method``).
        label: name in tables (``NON``, ``FO-SOL``, ``ZO-SOL``).
        differentiable: trains through the solver's differentiable step (the
            solver must declare ``capabilities.differentiable``).
        unrolls: trains on windows of ``unroll`` steps (with the curriculum);
            else on single steps.
        uses_estimator: its gradient comes from a zeroth-order estimator.
    """

    name: str
    label: str
    differentiable: bool
    unrolls: bool
    uses_estimator: bool

    def steps(self, unroll: int) -> int:
        """Unrolled solver steps per training window."""
        return unroll if self.unrolls else 1


NON = Method("non", "NON", differentiable=False, unrolls=False, uses_estimator=False)
FO_SOL = Method("fo-sol", "FO-SOL", differentiable=True, unrolls=True, uses_estimator=False)
ZO_SOL = Method("zo-sol", "ZO-SOL", differentiable=False, unrolls=True, uses_estimator=True)

METHODS: dict[str, Method] = {m.name: m for m in (NON, FO_SOL, ZO_SOL)}
"""Registry: ``train.method`` name -> method."""


def get_method(name: object) -> Method:
    """The method registered as ``name``; one line listing the registered names otherwise."""
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(f"train.method must be one of {', '.join(METHODS)}; got {name!r}")
    return METHODS[name]
