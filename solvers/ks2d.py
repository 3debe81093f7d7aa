"""Kuramoto–Sivashinsky on a periodic square, pure torch: the 2D scene where solver gradients matter.

    u_t = -Δu - Δ²u - ½|∇u|²,    (x, y) in [0, L)², periodic.

The 2D form of the KS equation in its potential ("integrated") formulation
(Kalogirou, Keaveny & Papageorgiou 2015, Proc. R. Soc. A 471, eq. 1.1, with
unit coefficients). Only gradients of ``u`` enter the right-hand side, so the
mean of ``u`` is a gauge: ``½|∇u|²`` would make it drift without bound, which
every benchmark of this equation removes. Here the nonlinear term's mean mode is
dropped, so the mean of ``u`` is conserved (zero for the initial conditions
drawn here) and the error measures the dynamics, not the drift.

Time stepping is ETDRK4 (Cox & Matthews 2002) with Kassam & Trefethen's
contour coefficients (:func:`sciml_zoo_solvers.ks.etdrk4_phi`, shared with the
1D solver) for ``L = |k|² - |k|⁴`` on the ``(n, n//2+1)`` rfft2 grid; the
gradient in the nonlinear term is pseudo-spectral and ignores the Nyquist
modes (their derivative is not real). No dealiasing, as in the 1D scene.

Batched over ``B``, differentiable through autograd (FO-SOL) and usable as a
black box. The uniform state is ``(B, 1, n, n)``; there are no physical
parameters. The pair of the ``ks2d_24`` recipe: source 24 x 24 with one step
per frame (h = dt = 0.5), reference 72 x 72 with 10 substeps per frame
(h = 0.05), spectrally truncated onto 24 x 24, ``L = 10 pi``; ``ks2d_48``
keeps the grid spacing on ``L = 20 pi`` (48 x 48 against 144 x 144).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.solver import Capabilities, SolverBase
from sciml_zoo_solvers.ks import etdrk4_phi

__all__ = ["KuramotoSivashinsky2D", "make_ks2d_solver"]


def _wavenumbers(n: int, length: float) -> tuple[Tensor, Tensor]:
    """``kx (n, 1)`` (full FFT axis) and ``ky (1, n//2+1)`` (rfft axis), float64, Nyquist kept."""
    scale = 2 * math.pi / length
    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)[:, None] * scale
    ky = torch.arange(n // 2 + 1, dtype=torch.float64)[None, :] * scale
    return kx, ky


class KuramotoSivashinsky2D(SolverBase):
    """Batched ETDRK4 2D Kuramoto–Sivashinsky solver on ``n x n`` periodic points.

    Args:
        resolution: ``(n, n)`` grid points (square, even, >= 8).
        dt: time between frames (one :meth:`step`).
        substeps: ETDRK4 steps per frame, ``h = dt / substeps``.
        length: side ``L`` of the periodic square.
        modes: random Fourier modes of the initial conditions.
        mean_free: drop the nonlinear term's mean mode (the gauge, module
            doc) [True]; ``False`` keeps the equation as written, so the mean
            of ``u`` drifts at ``-½ <|∇u|²>`` and an error in it never decays.
    """

    name = "ks2d"

    def __init__(
        self,
        *,
        resolution: tuple[int, ...] = (24, 24),
        dt: float = 0.5,
        substeps: int = 1,
        length: float = 10 * math.pi,
        modes: int = 6,
        mean_free: bool = True,
    ) -> None:
        res = tuple(int(r) for r in resolution)
        if len(res) != 2 or res[0] != res[1] or res[0] < 8 or res[0] % 2:
            raise ValueError(f"resolution must be (n, n) with n even and >= 8, e.g. (24, 24); got {tuple(resolution)}")
        if not (dt > 0 and int(substeps) >= 1 and length > 0 and int(modes) >= 1):
            raise ValueError(
                f"need dt > 0, substeps >= 1, length > 0 and modes >= 1; got dt={dt}, substeps={substeps}, "
                f"length={length}, modes={modes}"
            )
        self.resolution = res
        self.n = res[0]
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.h = self.dt / self.substeps
        self.length = float(length)
        self.modes = int(modes)
        self.mean_free = bool(mean_free)
        self.param_names = ()
        self._state_shape = (1, self.n, self.n)
        self.capabilities = Capabilities(differentiable=True, batched=True)
        self._cache: dict[torch.dtype, dict[str, Tensor]] = {}

    def _coefficients(self, dtype: torch.dtype) -> dict[str, Tensor]:
        """ETDRK4 coefficients and ``i kx``, ``i ky`` (Nyquist zeroed) as ``(1, 1, n, n//2+1)``."""
        if dtype not in self._cache:
            kx, ky = _wavenumbers(self.n, self.length)
            lin = kx**2 + ky**2
            c64 = etdrk4_phi(lin - lin**2, self.h)
            dx, dy = kx.clone(), ky.clone()
            dx[self.n // 2] = 0.0
            dy[:, -1] = 0.0
            c64["ikx"] = (1j * dx.expand_as(lin)).to(torch.complex128)
            c64["iky"] = (1j * dy.expand_as(lin)).to(torch.complex128)
            cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
            self._cache[dtype] = {k: v.to(cdtype if v.is_complex() else dtype)[None, None] for k, v in c64.items()}
        return self._cache[dtype]

    def step(self, state: Tensor, params: Tensor) -> Tensor:
        """Advance ``(B, 1, n, n)`` by ``dt`` (``substeps`` ETDRK4 steps); differentiable."""
        c = self._coefficients(state.dtype)
        shape = (self.n, self.n)
        e, e2, q, f1, f2, f3 = (c[k] for k in ("E", "E2", "Q", "f1", "f2", "f3"))
        ikx, iky = c["ikx"], c["iky"]

        def nonlinear(spectrum: Tensor) -> Tensor:
            ux = torch.fft.irfft2(ikx * spectrum, s=shape)
            uy = torch.fft.irfft2(iky * spectrum, s=shape)
            out = torch.fft.rfft2(-0.5 * (ux * ux + uy * uy))
            if not self.mean_free:
                return out
            mean_free = torch.ones_like(out.real)
            mean_free[..., 0, 0] = 0.0
            return out * mean_free  # the gauge: no drift of the mean

        v = torch.fft.rfft2(state)
        for _ in range(self.substeps):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            cc = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(cc)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        return torch.fft.irfft2(v, s=shape)

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Random smooth zero-mean fields ``(B, 1, n, n)``, a different draw per batch member.

        ``u0 = sum_m a_m cos(2 pi (p_m x + q_m y) / L + phi_m)`` over ``modes``
        plane waves with integer wavenumbers ``p_m, q_m`` in -3..3 (not both 0;
        the unstable band at ``L = 10 pi`` is ``|k| < 1``, i.e. ``|(p, q)| < 5``),
        ``a_m ~ U(0.2, 0.6)``, ``phi_m ~ U(0, 2 pi)``; member ``b`` uses the
        ``b``-th draws of a generator seeded by ``seed``. Burn-in is the
        recipe's ``warmup_steps``.
        """
        gen = torch.Generator().manual_seed(seed)
        grid = torch.arange(self.n, dtype=torch.float64) / self.n
        x, y = grid[:, None], grid[None, :]
        out = torch.zeros(len(params), 1, self.n, self.n, dtype=torch.float64)
        for b in range(len(params)):
            for _ in range(self.modes):
                p, q = 0, 0
                while p == 0 and q == 0:
                    p, q = (int(v) for v in torch.randint(-3, 4, (2,), generator=gen))
                amp = 0.2 + 0.4 * float(torch.rand((), generator=gen, dtype=torch.float64))
                phase = 2 * math.pi * float(torch.rand((), generator=gen, dtype=torch.float64))
                out[b, 0] += amp * torch.cos(2 * math.pi * (p * x + q * y) + phase)
        return out.float()

    def restrict(self, state: Tensor, resolution: tuple[int, ...]) -> Tensor:
        """Spectral truncation onto ``(m, m)`` points, ``m <= n``, even.

        Keeps the modes ``|p|, q < m/2`` (the coarse Nyquist modes are zeroed)
        and rescales for the FFT size, so the coarse grid samples the
        band-limited field.
        """
        res = tuple(int(r) for r in resolution)
        n = state.shape[-1]
        if len(res) != 2 or res[0] != res[1] or res[0] < 2 or res[0] % 2 or res[0] > n:
            raise ValueError(f"KS2D restricts onto (m, m) with m even and at most {n}; got {tuple(resolution)}")
        m = res[0]
        spec = torch.fft.rfft2(state)
        half = m // 2
        coarse = torch.zeros(*state.shape[:-2], m, half + 1, dtype=spec.dtype)
        coarse[..., :half, :half] = spec[..., :half, :half]
        coarse[..., m - half + 1 :, :half] = spec[..., n - half + 1 :, :half]
        return torch.fft.irfft2(coarse * (m * m) / (n * n), s=(m, m))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resolution": list(self.resolution),
            "dt": self.dt,
            "substeps": self.substeps,
            "length": self.length,
            "modes": self.modes,
            "mean_free": self.mean_free,
            "scheme": "ETDRK4 (Kassam-Trefethen, 32-point contour), pseudo-spectral, periodic square",
        }


def make_ks2d_solver(
    *,
    resolution: tuple[int, ...] = (24, 24),
    dt: float = 0.5,
    substeps: int = 1,
    length: float = 10 * math.pi,
    **options: Any,
) -> KuramotoSivashinsky2D:
    """Registry factory (entry point ``ks2d``): 2D KS at ``resolution = (n, n)``.

    Suggested pair: reference ``(72, 72), substeps=10``, source ``(24, 24),
    substeps=1``, both ``dt=0.5``, ``L = 10 pi`` (``ks2d_24``), or twice the
    side and points (``ks2d_48``).
    """
    return KuramotoSivashinsky2D(resolution=resolution, dt=dt, substeps=substeps, length=length, **options)
