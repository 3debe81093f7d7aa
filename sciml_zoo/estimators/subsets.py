"""Random per-tensor coordinate subsets at given sparsity ratios (DeepZero's gradient sparsity)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from sciml_zoo.errors import ConfigError

__all__ = ["coordinate_subsets"]


def coordinate_subsets(
    params: Mapping[str, Tensor],
    ratios: Mapping[str, float] | float,
    *,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Draw a random subset of flat coordinates in each tensor at its sparsity.

    A tensor of ``numel`` entries at sparsity ``r`` keeps
    ``max(1, round((1 − r)·numel))`` coordinates, uniformly without
    replacement. 1-D tensors (biases, norm parameters) and ratio-0 tensors
    keep all coordinates and draw no random numbers.

    Args:
        params: name -> parameter (only shapes are used).
        ratios: name -> sparsity for every tensor with 2+ dims, or one float.
        generator: source of randomness.

    Returns:
        name -> sorted ``int64`` flat indices on the CPU.
    """
    if isinstance(ratios, Mapping) and (unknown := set(ratios) - set(params)):
        raise ConfigError(
            f"sparsity ratios name unknown parameter(s) {sorted(unknown)}; trainable parameters are {sorted(params)}"
        )
    subsets = {}
    for name, p in params.items():
        if p.dim() <= 1:
            ratio = 0.0
        elif not isinstance(ratios, Mapping):
            ratio = float(ratios)
        elif name in ratios:
            ratio = float(ratios[name])
        else:
            raise ConfigError(
                f"no sparsity ratio for parameter {name!r}; give one for every weight tensor "
                "(zo_grasp_ratios does) or a single float"
            )
        if ratio == 0.0:
            subsets[name] = torch.arange(p.numel())
        else:
            keep = max(1, round((1.0 - ratio) * p.numel()))
            perm = torch.randperm(p.numel(), generator=generator, device=generator.device)
            subsets[name] = perm[:keep].sort().values.cpu()
    return subsets
