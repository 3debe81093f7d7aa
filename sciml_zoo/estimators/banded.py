"""The ``banded`` estimator: a local Jacobian recovered exactly by column colouring.

A PDE time step couples each cell to its neighbours within a few cells. If
``J = d step / d state`` is *local within* ``radius`` ``r`` cells in every
spatial dimension (any channel to any channel), two columns whose cells are at
least ``2r + 1`` apart in some dimension touch disjoint rows. Curtis, Powell
and Reid (1974) therefore probe whole *colours* at once: here the colour of
input entry ``(c, x)`` is ``c`` and one colour per spatial dimension such that
equal colours are ``>= 2r + 1`` cells apart, one probe per colour sums its
columns, and every entry of the band is read back from the probe of its
column's colour. That is ``C * prod(p)`` probes per sample, ``p`` colours per
dimension (``C (2r+1)^ndim`` when ``2r + 1`` divides the grid; twice that for
central differences), all in one batched solver call, and it
recovers the banded ``J`` exactly (up to the differences) for a truly local
step, with no translation-invariance assumption: the coefficients may vary
from cell to cell, and the step may be nonlinear and multi-field. It
generalises the ``stencil`` estimator to any local step in 1-3 dimensions.

Periodic grids: with ``boundary="periodic"`` (the default) each dimension of
size ``n`` is cut into ``m = n // (2r + 1)`` nearly equal blocks and a cell's
colour is its index in its block, so colours stay separated across the wrap
with ``ceil(n / m)`` colours (``2r + 1`` when it divides ``n``; e.g. 6 for
``n = 48, r = 2``). This is also correct for a non-periodic solver (the
wrapped band entries then come out as zero); ``boundary="open"`` (``x mod
(2r + 1)``) saves a colour or two when ``2r + 1`` does not divide a size.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sciml_zoo.estimators.base import ProbeContext
from sciml_zoo.estimators.jacobian import ProbedModel
from sciml_zoo.estimators.probes import masked

__all__ = ["Banded", "colour_periods"]


def _colour_of(n: int, radius: int, periodic: bool) -> tuple[list[int], int]:
    """Colour of each cell along one dimension, and the number of colours.

    Open: ``x mod (2r + 1)``. Periodic: the cycle is cut into ``m = n // (2r + 1)``
    blocks of (nearly) equal size, each at least ``2r + 1``, and a cell's colour is
    its index within its block; same-colour cells are then at least ``2r + 1``
    apart also across the wrap, with ``ceil(n / m)`` colours (the fewest possible).
    """
    width = 2 * radius + 1
    if not periodic or width >= n:
        count = min(width, n)
        return [x % count for x in range(n)], count
    blocks = n // width
    size, extra = divmod(n, blocks)
    colours = []
    for j in range(blocks):
        colours += list(range(size + (1 if j < extra else 0)))
    return colours, size + (1 if extra else 0)


def colour_periods(shape: tuple[int, ...], radius: int, *, periodic: bool) -> tuple[int, ...]:
    """Number of colours per spatial dimension for band radius ``radius`` (see the module docstring)."""
    return tuple(_colour_of(n, radius, periodic)[1] for n in shape)


def _offsets(n: int, radius: int, periodic: bool) -> range:
    if periodic and 2 * radius + 1 > n:
        return range(-(n // 2), n - n // 2)  # every residue once
    return range(-radius, radius + 1)


@dataclass(frozen=True)
class _Layout:
    """Colours and band offsets of one state shape, reused by every step."""

    colours: Tensor  # (X,) colour of each cell, in [0, S)
    num_colours: int  # S = prod(periods)
    gathers: list[tuple[Tensor, Tensor]]  # per offset: source cell index (X,), valid (X,)


@functools.lru_cache(maxsize=16)
def _layout(shape: tuple[int, ...], radius: int, periodic: bool, device: torch.device) -> _Layout:
    """Colours and band gathers of one grid (cached: every step of a run reuses them)."""
    periods = colour_periods(shape, radius, periodic=periodic)
    grids = torch.meshgrid(*[torch.arange(n, device=device) for n in shape], indexing="ij")
    colours = torch.zeros(shape, dtype=torch.long, device=device)
    for g, n, p in zip(grids, shape, periods, strict=True):
        table = torch.tensor(_colour_of(n, radius, periodic)[0], dtype=torch.long, device=device)
        colours = colours * p + table[g]
    gathers = []
    for offset in itertools.product(*[_offsets(n, radius, periodic) for n in shape]):
        source = torch.zeros(shape, dtype=torch.long, device=device)
        valid = torch.ones(shape, dtype=torch.bool, device=device)
        for g, n, o in zip(grids, shape, offset, strict=True):
            x = g + o
            if periodic:
                x = x % n
            else:
                valid &= (x >= 0) & (x < n)
                x = x.clamp(0, n - 1)
            source = source * n + x
        gathers.append((source.flatten(), valid.flatten()))
    return _Layout(colours.flatten(), math.prod(periods), gathers)


@dataclass(frozen=True)
class Banded(ProbedModel):
    """``J^T v`` from a local Jacobian recovered by column colouring (see the module docstring).

    Cost per wrapped step: ``B + 2 C prod(p) B`` sample-steps (central) or
    ``B + C prod(p) B`` (forward), ``p`` the colour periods.

    Attributes:
        radius: half-width ``r`` of the band in cells, per spatial dimension
            [2]. Entries of ``J`` farther than ``r`` from the diagonal are
            assumed zero; if they are not, they leak into other entries
            (``auto``'s held-out check detects this).
        boundary: ``"periodic"`` [default; safe for any solver] or ``"open"``.
        mu, difference, query_batch: as for every finite-difference estimator.
    """

    name: ClassVar[str] = "banded"
    radius: int = 2
    boundary: str = "periodic"

    def validate(self) -> None:
        super().validate()
        self._need_int("radius", 0)
        self._need_choice("boundary", ("periodic", "open"))

    def _layout(self, state: Tensor) -> _Layout:
        return _layout(tuple(state.shape[2:]), self.radius, self.boundary == "periodic", state.device)

    def num_probes(self, state: Tensor, mask: Tensor | None) -> int:
        periods = colour_periods(tuple(state.shape[2:]), self.radius, periodic=self.boundary == "periodic")
        return int(state.shape[1]) * math.prod(periods)

    def directions(self, ctx: ProbeContext) -> Tensor:
        state = ctx.state
        c, shape = state.shape[1], tuple(state.shape[2:])
        layout = self._layout(state)
        onehot = torch.nn.functional.one_hot(layout.colours, layout.num_colours).T.to(state.dtype)  # (S, X)
        eye = torch.eye(c, dtype=state.dtype, device=state.device)
        dirs = eye[:, None, :, None] * onehot[None, :, None, :]  # (C_in, S, C, X)
        dirs = masked(dirs.reshape(c * layout.num_colours, c, *shape), ctx.mask)
        return dirs[None].expand(state.shape[0], *dirs.shape)

    def assemble(self, ctx: ProbeContext, responses: Tensor) -> Any:
        b, c = ctx.state.shape[:2]
        layout = self._layout(ctx.state)
        y = responses.reshape(b, c, layout.num_colours, c, -1)  # (B, C_in, S, C_out, X)
        y = y.permute(0, 3, 1, 2, 4)  # (B, C_out, C_in, S, X)
        bands = []
        for source, valid in layout.gathers:
            colour = layout.colours[source].view(1, 1, 1, 1, -1).expand(b, c, c, 1, -1)
            bands.append(y.gather(3, colour)[:, :, :, 0] * valid)  # J[(c_out, x), (c_in, x + o)]
        return torch.stack(bands, 1), layout  # (B, O, C_out, C_in, X)

    def jvp(self, ctx: ProbeContext, model: Any, u: Tensor) -> Tensor:
        band, layout = model
        flat = u.flatten(2)  # (B, C_in, X)
        out = torch.zeros_like(flat)
        for i, (source, _) in enumerate(layout.gathers):
            out += (band[:, i] * flat[:, None, :, source]).sum(2)
        return out.view_as(u)

    def model_vjp(self, ctx: ProbeContext, model: Any, v: Tensor) -> Tensor:
        band, layout = model
        flat = v.flatten(2)  # (B, C_out, X)
        out = torch.zeros_like(flat)
        for i, (source, valid) in enumerate(layout.gathers):
            w = (band[:, i] * flat[:, :, None]).sum(1)  # (B, C_in, X): lands on input cell source[x]
            out.index_add_(2, source[valid], w[:, :, valid])
        return out.view_as(v)
