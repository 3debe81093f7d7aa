"""Build the example C solver (``solvers/c/burgers2d.c``) and wrap it as an adapter.

:func:`build_example_solver` compiles the C file with the system compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang`` found on ``PATH``) into a cache
directory; the binary's name carries a hash of the source, compiler and flags,
so an edited source is rebuilt and an unchanged one is compiled once.
:func:`make_burgers_c_solver` returns the :class:`~sciml_zoo_solvers.external.ExternalSolver`
around it, with initial conditions and downsampling for dataset generation.

The scene: 2D viscous Burgers (u, v) on the periodic square ``[0, 2*pi)^2``,
random smooth initial fields of amplitude 1, viscosity ``nu`` in about
``[0.005, 0.05]``. Shocks steepen below what a 32×32 grid resolves, and the
upwind scheme's numerical viscosity (``|u| dx / 2``) dominates on the coarse
grid, so the coarse run drifts from the downsampled 64×64 run.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo.errors import SolverError

from .external import ExternalSolver

__all__ = ["BurgersCSolver", "build_example_solver", "example_source", "make_burgers_c_solver"]

_FLAGS = ("-O2",)
_LIBS = ("-lm",)


def example_source() -> Path:
    """Path of the shipped C source ``burgers2d.c``."""
    return Path(__file__).resolve().parent / "c" / "burgers2d.c"


def _compiler() -> list[str]:
    if os.environ.get("CC"):
        cc = shlex.split(os.environ["CC"])
        found = shutil.which(cc[0])
        if found is None:
            raise SolverError(f"the compiler named by $CC ({cc[0]!r}) is not on PATH; fix or unset CC")
        return [found, *cc[1:]]
    for name in ("cc", "gcc", "clang"):
        if (found := shutil.which(name)) is not None:
            return [found]
    raise SolverError(
        "no C compiler found (looked for $CC, cc, gcc, clang); install one "
        "(apt install build-essential, xcode-select --install) or set CC"
    )


def _default_cache_dir() -> Path:
    if os.environ.get("SCIML_ZOO_CACHE"):
        return Path(os.environ["SCIML_ZOO_CACHE"]) / "bin"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sciml-zoo" / "bin"


def build_example_solver(out_dir: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """Compile ``burgers2d.c`` into ``out_dir`` (default: the user cache) and return the binary.

    Args:
        out_dir: directory for the executable; created if missing. Defaults to
            ``$SCIML_ZOO_CACHE/bin`` or ``~/.cache/sciml-zoo/bin``.
        force: recompile even if a binary for this source and compiler exists.

    Raises:
        SolverError: no compiler, or compilation failed (the compiler's output is included).
    """
    source = example_source()
    if not source.is_file():
        raise SolverError(f"C source {source} is missing; reinstall sciml-zoo (package data)")
    cc = _compiler()
    digest = hashlib.sha256(source.read_bytes() + "\0".join([*cc, *_FLAGS, *_LIBS]).encode()).hexdigest()[:16]
    out = Path(out_dir) if out_dir is not None else _default_cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    exe = out / f"burgers2d-{digest}"
    if exe.is_file() and os.access(exe, os.X_OK) and not force:
        return exe
    tmp = out / f".{exe.name}.{os.getpid()}.tmp"
    cmd = [*cc, *_FLAGS, "-o", str(tmp), str(source), *_LIBS]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SolverError(f"could not run the C compiler ({shlex.join(cmd)}): {exc}") from exc
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SolverError(f"compiling {source.name} failed ({shlex.join(cmd)}):\n{done.stderr.strip()}")
    os.replace(tmp, exe)  # atomic: concurrent builds never see a half-written binary
    return exe


class BurgersCSolver(ExternalSolver):
    """The compiled ``burgers2d`` behind the external-program protocol.

    State ``(B, 2, ny, nx)``: velocities ``u`` (x) and ``v`` (y). Params
    ``(B, 1)``: viscosity ``nu`` (length²/time). One ``step`` lasts ``dt``.

    Args:
        executable: the compiled program (see :func:`build_example_solver`).
        resolution: ``(nx, ny)``.
        dt: duration of one step; sub-steps are chosen by the program (CFL).
        length: side of the periodic square.
        cfl: sub-step safety factor passed to the program (< 1).
        amplitude: max |velocity| of :meth:`initial_state`.
        max_wavenumber: highest Fourier mode (per axis) of :meth:`initial_state`.
        mode, timeout_s: see :class:`~sciml_zoo_solvers.external.ExternalSolver`.
        fault: test hook passed as ``--fault`` (e.g. ``"hang-after=3"``).
    """

    def __init__(
        self,
        *,
        executable: str | os.PathLike[str],
        resolution: tuple[int, int] = (32, 32),
        dt: float = 0.1,
        length: float = 2 * np.pi,
        cfl: float = 0.8,
        amplitude: float = 1.0,
        max_wavenumber: int = 3,
        mode: str = "worker",
        timeout_s: float = 60.0,
        fault: str | None = None,
    ) -> None:
        for label, value in (("dt", dt), ("length", length), ("cfl", cfl)):
            if not value > 0:
                raise ValueError(f"{label} must be > 0, got {value!r}")
        command = [
            str(executable),
            "--dt",
            repr(float(dt)),
            "--length",
            repr(float(length)),
            "--cfl",
            repr(float(cfl)),
        ]
        command += ["--fault", fault] if fault else []
        command += ["--file"] if mode == "file" else []
        super().__init__(
            command=command,
            resolution=resolution,
            channels=2,
            param_names=("viscosity",),
            mode=mode,
            timeout_s=timeout_s,
            name="burgers-c",
        )
        self.dt, self.length, self.cfl = float(dt), float(length), float(cfl)
        self.amplitude, self.max_wavenumber = float(amplitude), int(max_wavenumber)

    def initial_state(self, params: Tensor, *, seed: int) -> Tensor:
        """Random smooth periodic ``(u, v)``: Fourier modes up to ``max_wavenumber``.

        Mode ``k`` gets a normal amplitude scaled by ``1/|k|^2``; each field is
        then scaled to ``max |.| = amplitude``. Reproducible from ``seed``.
        """
        rng = np.random.default_rng(seed)
        _, ny, nx = self.state_shape
        y = np.arange(ny)[:, None] * (2 * np.pi / ny)
        x = np.arange(nx)[None, :] * (2 * np.pi / nx)
        kmax = self.max_wavenumber
        modes = [(kx, ky) for kx in range(-kmax, kmax + 1) for ky in range(0, kmax + 1) if ky > 0 or kx > 0]
        out = np.zeros((len(params), 2, ny, nx))
        for b in range(len(params)):
            for c in range(2):
                coef = rng.standard_normal((len(modes), 2))
                f = sum(
                    (a * np.cos(kx * x + ky * y) + s * np.sin(kx * x + ky * y)) / (kx**2 + ky**2)
                    for (kx, ky), (a, s) in zip(modes, coef, strict=True)
                )
                out[b, c] = self.amplitude * f / np.abs(f).max()
        return torch.from_numpy(out.astype(np.float32))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            dt=self.dt,
            length=self.length,
            cfl=self.cfl,
            amplitude=self.amplitude,
            max_wavenumber=self.max_wavenumber,
            scheme="upwind advection, 5-point diffusion, SSP-RK2, periodic (burgers2d.c)",
        )
        return info


def make_burgers_c_solver(
    *,
    resolution: tuple[int, int] = (32, 32),
    build_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> BurgersCSolver:
    """Registry factory: compile ``burgers2d.c`` if needed and wrap it.

    Suggested pair: reference ``resolution=(64, 64)``, source ``(32, 32)``,
    ``dt=0.1``. ``options`` go to :class:`BurgersCSolver`.
    """
    return BurgersCSolver(executable=build_example_solver(build_dir), resolution=resolution, **options)


# a file being opened may not name the directory: a binary planted there would be run
make_burgers_c_solver.exec_options = ("build_dir",)  # type: ignore[attr-defined]
