"""Kuramoto–Sivashinsky equation on a periodic line, pure torch: a chaotic benchmark scene.

    u_t + u u_x + u_xx + u_xxxx = 0,    x in [0, L), periodic.

Time stepping is ETDRK4 (Cox & Matthews 2002) with the coefficients of
Kassam & Trefethen (2005, SIAM J. Sci. Comput. 26(4), eqs. 2.5 and 26):
contour integrals over 32 points, evaluated in float64 and then cast, which
avoids the cancellation of the phi-functions near zero. The nonlinear term
``-(u^2/2)_x`` is pseudo-spectral with ``torch.fft.rfft/irfft``; its
derivative ignores the Nyquist mode (whose derivative is not real), and the
optional 2/3 rule zeroes the top third of the modes of ``u^2``. Dealiasing is
off by default, as in Kassam & Trefethen's ``kursiv.m``: the hyperviscous
``-k^4`` damps the aliased modes, so at 128 points the rule hardly changes the
run, while at 48 points it cuts modes up to ``k = 2.2`` down to ``k = 1.45``,
which still carry dynamics (measured here: the coarse error after 40 frames
grows from about 0.36 to 2.1).

Batched over ``B``, differentiable through autograd (FO-SOL) and usable as a
black box. One :meth:`KuramotoSivashinsky.step` advances one frame of ``dt``
with ``substeps`` ETDRK4 steps. The pair used by the ``ks`` recipe: reference
``resolution=(128,), substeps=10`` (h = 0.05), source ``resolution=(48,)``,
one step per frame (h = 0.5), ``L = 22 pi``; 32 points at ``L = 22 pi`` are
under-resolved and blow up within a few frames.

The uniform state is ``(B, 1, n)``. The domain length is fixed by the factory
(``length``), or, with ``length_param=True``, read per batch member from
``params[:, 0]`` (coefficients are cached per distinct length; no gradient
flows to the length, only to the state).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from sciml_zoo.solver import Capabilities, SolverBase

__all__ = ["KuramotoSivashinsky", "etdrk4_coefficients", "etdrk4_phi", "make_ks_solver"]

CONTOUR_POINTS = 32
"""Points on the Kassam–Trefethen contour (a circle of radius 1 around each h*L)."""


def etdrk4_phi(lin: Tensor, h: float) -> dict[str, Tensor]:
    """ETDRK4 coefficients for a diagonal linear operator ``lin`` (float64, any shape).

    Returns ``E = exp(hL)``, ``E2 = exp(hL/2)``, ``Q``, ``f1``, ``f2``, ``f3``
    (Kassam & Trefethen 2005, eq. 2.5), each shaped like ``lin``, with the
    phi-functions as means over a contour of :data:`CONTOUR_POINTS` points (a
    circle of radius 1 around each ``hL``), which avoids their cancellation
    near zero. Shared by the 1D and 2D KS solvers.
    """
    roots = torch.exp(1j * math.pi * (torch.arange(1, CONTOUR_POINTS + 1, dtype=torch.float64) - 0.5) / CONTOUR_POINTS)
    lr = h * lin.to(torch.complex128)[..., None] + roots
    e_lr = torch.exp(lr)
    return {
        "E": torch.exp(h * lin),
        "E2": torch.exp(h * lin / 2),
        "Q": h * ((torch.exp(lr / 2) - 1) / lr).mean(-1).real,
        "f1": h * ((-4 - lr + e_lr * (4 - 3 * lr + lr**2)) / lr**3).mean(-1).real,
        "f2": h * ((2 + lr + e_lr * (-2 + lr)) / lr**3).mean(-1).real,
        "f3": h * ((-4 - 3 * lr - lr**2 + e_lr * (4 - lr)) / lr**3).mean(-1).real,
    }


def etdrk4_coefficients(n: int, h: float, length: float, *, dealias: bool) -> dict[str, Tensor]:
    """ETDRK4 coefficients of KS on ``n`` points, step ``h``, domain ``length``; float64/complex128.

    Returns a dict of ``(n//2+1,)`` tensors: :func:`etdrk4_phi` of
    ``L = k^2 - k^4`` and ``g = -i k / 2`` (zero at the Nyquist mode and, with
    ``dealias``, above 2/3 of it).
    """
    modes = torch.arange(n // 2 + 1, dtype=torch.float64)
    k = 2 * math.pi / length * modes
    kd = k.clone()
    if n % 2 == 0:
        kd[-1] = 0.0  # the Nyquist mode's derivative is not real
    if dealias:
        kd[modes > (2 / 3) * (n // 2)] = 0.0
    return {**etdrk4_phi(k**2 - k**4, h), "g": -0.5j * kd.to(torch.complex128)}


class KuramotoSivashinsky(SolverBase):
    """Batched ETDRK4 Kuramoto–Sivashinsky solver on ``n`` periodic points.

    Args:
        resolution: ``(n,)`` grid points (even, >= 8).
        dt: time between frames (one :meth:`step`).
        substeps: ETDRK4 steps per frame, ``h = dt / substeps``.
        length: domain length ``L`` when it is not a parameter.
        length_param: read ``L`` per batch member from ``params[:, 0]``
            (``param_names = ("length",)``) instead of ``length``
            (``param_names = ()``, params ``(B, 0)``).
        dealias: 2/3 rule on the nonlinear term.
        modes: random cosine modes of the initial conditions.
    """

    name = "ks"

    def __init__(
        self,
        *,
        resolution: tuple[int, ...] = (48,),
        dt: float = 0.5,
        substeps: int = 1,
        length: float = 22 * math.pi,
        length_param: bool = False,
        dealias: bool = False,
        modes: int = 4,
    ) -> None:
        res = tuple(int(r) for r in resolution)
        if len(res) != 1 or res[0] < 8 or res[0] % 2:
            raise ValueError(f"resolution must be (n,) with n even and >= 8, e.g. (48,); got {tuple(resolution)}")
        if dt <= 0 or int(substeps) < 1 or length <= 0 or int(modes) < 1:
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
        self.length_param = bool(length_param)
        self.dealias = bool(dealias)
        self.modes = int(modes)
        self.param_names = ("length",) if self.length_param else ()
        self._state_shape = (1, self.n)
        self.capabilities = Capabilities(differentiable=True, batched=True)
        self._cache: dict[tuple[float, torch.dtype], dict[str, Tensor]] = {}

    # -- coefficients --------------------------------------------------------------
    def _coefficients_for(self, length: float, dtype: torch.dtype) -> dict[str, Tensor]:
        key = (length, dtype)
        if key not in self._cache:
            c64 = etdrk4_coefficients(self.n, self.h, length, dealias=self.dealias)
            cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
            self._cache[key] = {k: v.to(cdtype if v.is_complex() else dtype) for k, v in c64.items()}
        return self._cache[key]

    def _coefficients(self, params: Tensor, dtype: torch.dtype) -> dict[str, Tensor]:
        """Coefficients broadcastable against ``(B, 1, n//2+1)`` spectra."""
        if not self.length_param:
            return {k: v.view(1, 1, -1) for k, v in self._coefficients_for(self.length, dtype).items()}
        if params.dim() != 2 or params.shape[1] < 1:
            raise ValueError(f"params must be (B, 1) domain lengths, got shape {tuple(params.shape)}")
        lengths = params[:, 0].detach().double().tolist()
        if min(lengths) <= 0:
            raise ValueError(f"domain lengths must be > 0, got {lengths}")
        distinct = sorted(set(lengths))
        if len(distinct) == 1:
            return {k: v.view(1, 1, -1) for k, v in self._coefficients_for(distinct[0], dtype).items()}
        per = [self._coefficients_for(length, dtype) for length in lengths]
        return {k: torch.stack([c[k] for c in per])[:, None] for k in per[0]}

    # -- the protocol ----------------------------------------------------------------
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        """Advance ``(B, 1, n)`` by ``dt`` (``substeps`` ETDRK4 steps); differentiable."""
        c = self._coefficients(params, state.dtype)
        n = self.n
        e, e2, q, f1, f2, f3, g = (c[k] for k in ("E", "E2", "Q", "f1", "f2", "f3", "g"))

        def nonlinear(spectrum: Tensor) -> Tensor:
            u = torch.fft.irfft(spectrum, n=n)
            return g * torch.fft.rfft(u * u)

        v = torch.fft.rfft(state)
        for _ in range(self.substeps):
            nv = nonlinear(v)
            a = e2 * v + q * nv
            na = nonlinear(a)
            b = e2 * v + q * na
            nb = nonlinear(b)
            cc = e2 * a + q * (2 * nb - nv)
            nc = nonlinear(cc)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        return torch.fft.irfft(v, n=n)

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Random smooth initial conditions ``(B, 1, n)``, a different draw per batch member.

        ``u0 = sum_m a_m cos(2 pi k_m x / L + phi_m)`` over ``modes`` cosines
        with integer wavenumbers ``k_m`` in 1..8 (the unstable band at
        ``L = 22 pi`` is ``k <= 10``), amplitudes ``a_m ~ U(0.5, 1.5)`` and
        phases ``phi_m ~ U(0, 2 pi)``; member ``b`` uses the ``b``-th draws of
        a generator seeded by ``seed``, so simulations of one batch differ.
        Burn-in is the dataset recipe's ``warmup_steps``.
        """
        gen = torch.Generator().manual_seed(seed)
        x = torch.arange(self.n, dtype=torch.float64) / self.n  # x / L
        out = torch.zeros(len(params), 1, self.n, dtype=torch.float64)
        for b in range(len(params)):
            k = torch.randint(1, 9, (self.modes,), generator=gen).double()
            amp = 0.5 + torch.rand(self.modes, generator=gen, dtype=torch.float64)
            phase = 2 * math.pi * torch.rand(self.modes, generator=gen, dtype=torch.float64)
            out[b, 0] = (amp[:, None] * torch.cos(2 * math.pi * k[:, None] * x[None] + phase[:, None])).sum(0)
        return out.float()

    def restrict(self, state: Tensor, resolution: tuple[int, ...]) -> Tensor:
        """Spectral truncation onto ``resolution = (m,)`` points, ``m <= n``, even.

        Keeps modes ``0 .. m/2 - 1``, zeroes the coarse Nyquist mode and rescales
        for the FFT size, so the coarse grid samples the band-limited field.
        """
        m = int(tuple(resolution)[0]) if len(tuple(resolution)) == 1 else -1
        if m < 2 or m % 2 or m > state.shape[-1]:
            raise ValueError(
                f"KS restricts onto (m,) with m even and at most {state.shape[-1]} points; got {tuple(resolution)}"
            )
        spectrum = torch.fft.rfft(state)[..., : m // 2]
        return torch.fft.irfft(spectrum * (m / state.shape[-1]), n=m)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resolution": list(self.resolution),
            "dt": self.dt,
            "substeps": self.substeps,
            "length": None if self.length_param else self.length,
            "length_param": self.length_param,
            "dealias": self.dealias,
            "modes": self.modes,
            "scheme": "ETDRK4 (Kassam-Trefethen, 32-point contour), pseudo-spectral, periodic",
        }


def make_ks_solver(
    *,
    resolution: tuple[int, ...] = (48,),
    dt: float = 0.5,
    substeps: int = 1,
    length: float = 22 * math.pi,
    **options: Any,
) -> KuramotoSivashinsky:
    """Registry factory (entry point ``ks``): KS at ``resolution = (n,)``.

    Suggested pair (the benchmark): reference ``resolution=(128,), substeps=10``,
    source ``resolution=(48,), substeps=1``, both ``dt=0.5``, ``L = 22 pi``.
    Other options: ``length_param``, ``dealias``, ``modes`` (see
    :class:`KuramotoSivashinsky`).
    """
    return KuramotoSivashinsky(resolution=resolution, dt=dt, substeps=substeps, length=length, **options)
