"""Couple a simulator that is a separate program, in any language.

The adapter talks to the program through a tiny binary protocol, so a C,
Fortran, Julia or closed-source code needs a few dozen lines to take part.
It is black-box (no gradients) and unbatched: one request per batch member.

Protocol, version 1
-------------------
All numbers little-endian. A *header* is 24 bytes::

    bytes 0-3    magic   b"SZIO"
    bytes 4-7    uint32  version = 1
    bytes 8-23   uint32  C, H, W, P   (channels, grid rows y, columns x, parameters)

* **Request** = header + ``C*H*W`` float64 (the state, C order: channel, then
  ``y``, then ``x``) + ``P`` float64 (the physical parameters).
* **Reply** = header with the same ``C, H, W`` and ``P = 0`` + ``C*H*W``
  float64: the state one time step later.
* **Errors**: the program writes a message to stderr and exits with a non-zero
  status. The adapter shows the last stderr lines to the user.

Each request is self-contained (the step must depend only on the request, not
on earlier ones), so the adapter may restart the program at any time.

Two modes:

* ``mode="worker"`` (persistent): the adapter starts ``command`` once
  (``subprocess.Popen`` with an argument list, never a shell), then for every
  request writes it to the program's stdin and reads the reply from its stdout.
  The program loops until stdin reaches EOF, then exits 0. It must flush stdout
  after each reply.
* ``mode="file"`` (one-shot, for codes that only read and write files): for
  every request the adapter writes the request bytes to a fresh temporary
  directory and runs ``command + [input_path, output_path]``; the program
  writes the reply bytes to ``output_path`` and exits 0.

Robustness: every request has a deadline of ``timeout_s`` seconds. A crash,
a hang (the program is killed), a non-zero exit, a malformed or short reply,
or a NaN/Inf in the reply raises :class:`~sciml_zoo.errors.SolverError` naming
the program, the call number and the batch member, with the program's last
stderr lines (a missed deadline raises
:class:`~sciml_zoo.executors.QueryTimeout`, a ``SolverError``). After a crash,
hang or garbled reply the worker is discarded and a fresh one starts on the
next call; a worker that died between calls (killed from outside) is
restarted. Every restart is counted in ``restarts`` and its reason kept in
``restart_reasons``; the fault policy (:mod:`sciml_zoo.faults`) adds them to
its counts and retries the failed query.

POSIX only (the deadline uses ``select`` on the pipes).
"""

from __future__ import annotations

import collections
import math
import os
import select
import shlex
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sciml_zoo.errors import SolverError
from sciml_zoo.executors.base import QueryTimeout
from sciml_zoo.solver import Capabilities, SolverBase

__all__ = [
    "HEADER",
    "MAGIC",
    "VERSION",
    "ExternalSolver",
    "make_external_solver",
    "pack_message",
    "unpack_header",
]

MAGIC = b"SZIO"
VERSION = 1
HEADER = struct.Struct("<4sIIIII")  # magic, version, C, H, W, P
_STDERR_LINES = 20


def pack_message(state: np.ndarray, params: np.ndarray | None = None) -> bytes:
    """Encode a request (``params`` given) or a reply (``params=None``).

    Args:
        state: ``(C, H, W)`` array, converted to little-endian float64.
        params: ``(P,)`` parameters, or ``None`` for a reply.
    """
    c, h, w = state.shape
    p = np.zeros(0, dtype="<f8") if params is None else np.asarray(params, dtype="<f8").reshape(-1)
    return (
        HEADER.pack(MAGIC, VERSION, c, h, w, len(p)) + np.ascontiguousarray(state, dtype="<f8").tobytes() + p.tobytes()
    )


def unpack_header(data: bytes) -> tuple[int, int, int, int]:
    """Return ``(C, H, W, P)`` of a 24-byte header; ``ValueError`` if it is not one."""
    if len(data) < HEADER.size:
        raise ValueError(f"it is {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, c, h, w, p = HEADER.unpack(data[: HEADER.size])
    if magic != MAGIC or version != VERSION:
        raise ValueError(
            f"it does not start with the protocol header (got {data[: HEADER.size]!r}, "
            f"expected magic {MAGIC!r} version {VERSION}): does the program print other "
            "text to stdout? Send logs to stderr"
        )
    return c, h, w, p


class _Failure(Exception):
    """Internal: one request failed; ``restart`` says the worker must be discarded."""

    def __init__(self, what: str, *, restart: bool, timeout: bool = False) -> None:
        super().__init__(what)
        self.restart, self.timeout = restart, timeout


class ExternalSolver(SolverBase):
    """Adapter for a simulator program speaking the protocol above.

    Args:
        command: program and arguments as a list, e.g.
            ``["./burgers2d", "--dt", "0.05"]`` (a string is refused: no shell).
        resolution: ``(nx, ny)``; the state is ``(B, channels, ny, nx)``.
        channels: number of state channels ``C``.
        param_names: names of the ``P`` physical parameters.
        mode: ``"worker"`` (persistent process) or ``"file"`` (one run per request).
        timeout_s: deadline of one request, in seconds (startup included).
        name: adapter name used in messages (default: the program's file name).
        cwd, env: working directory and environment of the program.

    One instance drives one worker and is not thread-safe; a pickled copy (e.g.
    in a process pool) starts its own worker.
    """

    def __init__(
        self,
        *,
        command: Sequence[str],
        resolution: tuple[int, int],
        channels: int = 1,
        param_names: Sequence[str] = ("param",),
        mode: str = "worker",
        timeout_s: float = 60.0,
        name: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if isinstance(command, (str, bytes)) or not all(isinstance(a, str) for a in command):
            raise TypeError(
                f"command must be a list of strings such as ['./solver', '--dt', '0.1'], got "
                f"{command!r}; it is run without a shell, so split it (shlex.split) yourself"
            )
        if not command:
            raise ValueError("command is empty; give the program path as its first element")
        if mode not in ("worker", "file"):
            raise ValueError(f"mode must be 'worker' or 'file', got {mode!r}")
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.command = list(command)
        self.mode, self.timeout_s = mode, float(timeout_s)
        self.name = name or f"external:{Path(self.command[0]).name}"
        self.param_names = tuple(param_names)
        self.cwd, self.env = cwd, env
        nx, ny = (int(r) for r in resolution)
        self._state_shape = (int(channels), ny, nx)
        self.capabilities = Capabilities(differentiable=False, batched=False)
        self.calls = 0  # step() calls so far (numbering in error messages)
        self.restarts = 0  # workers started after the first one
        self.restart_reasons: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._pending_reason = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._stderr_thread: threading.Thread | None = None
        self._started_once = False

    # ------------------------------------------------------------------ public
    def step(self, state: Tensor, params: Tensor) -> Tensor:
        """Advance each batch member by one request to the program.

        Args:
            state: ``(B, C, H, W)`` float tensor.
            params: ``(B, P)`` physical parameters.

        Returns:
            ``(B, C, H, W)`` next state, same dtype and device as ``state``.
        """
        c, h, w = self._state_shape
        if state.ndim != 4 or tuple(state.shape[1:]) != self._state_shape:
            raise ValueError(f"state must have shape (B, {c}, {h}, {w}), got {tuple(state.shape)}")
        if params.shape != (len(state), len(self.param_names)):
            raise ValueError(
                f"params must have shape ({len(state)}, {len(self.param_names)}) "
                f"({', '.join(self.param_names)} per sample), got {tuple(params.shape)}"
            )
        self.calls += 1
        s = state.detach().cpu().double().numpy()
        p = params.detach().cpu().double().numpy()
        out = np.empty(s.shape, dtype=np.float64)
        for b in range(len(s)):
            request = pack_message(s[b], p[b])
            try:
                reply = self._worker_call(request) if self.mode == "worker" else self._file_call(request)
                out[b] = self._decode(reply)
            except _Failure as exc:
                if exc.restart:
                    self._discard()
                    self._pending_reason = f"call {self.calls}, member {b}: {exc}"
                error = QueryTimeout if exc.timeout else SolverError
                raise error(self._message(str(exc), b)) from None
            if not np.isfinite(out[b]).all():
                raise SolverError(
                    self._message(
                        "returned NaN/Inf (the simulation diverged: reduce the time step or check "
                        "the parameters and the correction's scale)",
                        b,
                    )
                )
        return torch.from_numpy(out).to(dtype=state.dtype, device=state.device)

    @property
    def pid(self) -> int | None:
        """Process id of the running worker, if any."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def close(self) -> None:
        """Stop the worker: close its stdin (EOF), wait up to 2 s, then kill it."""
        self._stop(graceful=True)

    def __enter__(self) -> ExternalSolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the configuration only; a copy starts its own worker."""
        state = self.__dict__.copy()
        state.update(_proc=None, _stderr_thread=None, _stderr=collections.deque(maxlen=_STDERR_LINES))
        return state

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": list(self.command),
            "mode": self.mode,
            "state_shape": list(self._state_shape),
            "param_names": list(self.param_names),
            "protocol": f"{MAGIC.decode()} v{VERSION}",
        }

    # ------------------------------------------------------------------ worker mode
    def _start(self) -> None:
        try:
            proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                cwd=self.cwd,
                env=self.env,
            )
        except OSError as exc:
            raise SolverError(
                f"external solver {self.name!r} could not be started ({shlex.join(self.command)}): "
                f"{exc}; check that the program exists and is executable"
            ) from exc
        self._stderr = collections.deque(maxlen=_STDERR_LINES)
        self._stderr_thread = threading.Thread(
            target=_drain, args=(proc.stderr, self._stderr), daemon=True, name=f"{self.name}-stderr"
        )
        self._stderr_thread.start()
        if self._started_once:
            self.restarts += 1
            self.restart_reasons.append(self._pending_reason or "restarted")
        self._started_once = True
        self._pending_reason = ""
        self._proc = proc

    def _discard(self) -> None:
        """Kill the worker (after a failure); the next call starts a fresh one."""
        self._stop(graceful=False)

    def _stop(self, *, graceful: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if graceful and proc.stdin is not None:
                proc.stdin.close()
                proc.wait(timeout=2.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1.0)  # collect its last stderr lines
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def _worker_call(self, request: bytes) -> bytes:
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            self._discard()  # died between calls: no request was in flight; restart it (counted)
            self._pending_reason = f"before call {self.calls}: the worker had {_describe_exit(code)}"
        if self._proc is None:
            self._start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        fd_in, fd_out = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(fd_in, False)
        deadline = time.monotonic() + self.timeout_s
        sent, reply, expected = 0, bytearray(), HEADER.size
        view = memoryview(request)
        while len(reply) < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = f"; received {len(reply)} byte(s) so far: {bytes(reply[:40])!r}" if reply else ""
                raise _Failure(
                    f"did not answer within timeout_s={self.timeout_s:g} s{got}; the worker was "
                    "killed and a fresh one starts on the next call (raise timeout_s if the "
                    "solver is just slow)",
                    restart=True,
                    timeout=True,
                )
            writable = [fd_in] if sent < len(request) else []
            readable, ready, _ = select.select([fd_out], writable, [], remaining)
            if ready:
                try:
                    sent += os.write(fd_in, view[sent : sent + 65536])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    raise _Failure(self._died("the worker stopped reading its input"), restart=True) from None
            if readable:
                chunk = os.read(fd_out, expected - len(reply))
                if not chunk:
                    raise _Failure(self._died("the worker stopped before replying"), restart=True)
                reply += chunk
                if expected == HEADER.size and len(reply) == HEADER.size:
                    expected += self._payload_size(bytes(reply))
        return bytes(reply)

    def _died(self, what: str) -> str:
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return f"{what} but was still running; it was killed"
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=1.0)
        return f"{what}: it {_describe_exit(code)}; a fresh worker starts on the next call"

    # ------------------------------------------------------------------ file mode
    def _file_call(self, request: bytes) -> bytes:
        with tempfile.TemporaryDirectory(prefix="sciml-zoo-") as tmp:
            inp, outp = Path(tmp) / "request.szio", Path(tmp) / "reply.szio"
            inp.write_bytes(request)
            try:
                done = subprocess.run(
                    [*self.command, str(inp), str(outp)],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=self.timeout_s,
                    cwd=self.cwd,
                    env=self.env,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                self._set_stderr(exc.stderr)
                raise _Failure(
                    f"did not finish within timeout_s={self.timeout_s:g} s and was "
                    "killed (raise timeout_s if the solver is just slow)",
                    restart=False,
                    timeout=True,
                ) from None
            except OSError as exc:
                raise SolverError(
                    f"external solver {self.name!r} could not be started "
                    f"({shlex.join(self.command)}): {exc}; check that the program exists and "
                    "is executable"
                ) from exc
            self._set_stderr(done.stderr)
            if done.returncode != 0:
                raise _Failure(_describe_exit(done.returncode), restart=False)
            if not outp.is_file():
                raise _Failure(
                    f"exited 0 but wrote no output file (expected {outp.name} as its last argument)",
                    restart=False,
                )
            return outp.read_bytes()

    def _set_stderr(self, data: bytes | None) -> None:
        lines = (data or b"").decode(errors="replace").splitlines()
        self._stderr = collections.deque(lines, maxlen=_STDERR_LINES)

    # ------------------------------------------------------------------ decoding
    def _payload_size(self, header: bytes) -> int:
        try:
            c, h, w, p = unpack_header(header)
        except ValueError as exc:
            raise _Failure(f"sent a malformed reply: {exc}", restart=True) from None
        if (c, h, w) != self._state_shape or p != 0:
            raise _Failure(
                f"sent a malformed reply: header says C,H,W,P = {c},{h},{w},{p}, expected "
                f"{','.join(map(str, self._state_shape))},0",
                restart=True,
            )
        return 8 * c * h * w

    def _decode(self, reply: bytes) -> np.ndarray:
        if len(reply) < HEADER.size:
            raise _Failure(
                f"sent a short reply ({len(reply)} bytes: {reply[:40]!r}), expected "
                f"a {HEADER.size}-byte header and a state",
                restart=True,
            )
        size = HEADER.size + self._payload_size(reply)
        if len(reply) != size:
            raise _Failure(f"sent a reply of {len(reply)} bytes, expected {size}", restart=True)
        return np.frombuffer(reply, dtype="<f8", offset=HEADER.size).reshape(self._state_shape)

    def _message(self, what: str, member: int) -> str:
        """First line: what failed where; then the command and the program's last stderr."""
        lines = list(self._stderr)[-10:]
        tail = "\n".join(f"  | {ln}" for ln in lines) if lines else "  (nothing)"
        return (
            f"external solver {self.name!r} failed on call {self.calls}, batch member "
            f"{member}: {what}\n  command ({self.mode} mode): {shlex.join(self.command)}\n"
            f"  last stderr lines:\n{tail}"
        )


def _drain(pipe: Any, lines: collections.deque[str]) -> None:
    """Reader thread: keep the last stderr lines (and never let the pipe fill up)."""
    try:
        for raw in iter(pipe.readline, b""):
            lines.append(raw.decode(errors="replace").rstrip("\n"))
    except (OSError, ValueError):
        pass


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = f"signal {-code}"
        return f"was killed by {sig} (exit status {code})"
    return f"exited with status {code}"


def make_external_solver(
    *,
    command: Sequence[str],
    resolution: tuple[int, int],
    mode: str = "worker",
    timeout_s: float = 60.0,
    **options: Any,
) -> ExternalSolver:
    """Registry factory for :class:`ExternalSolver` (options: channels, param_names, name, ...)."""
    return ExternalSolver(command=command, resolution=resolution, mode=mode, timeout_s=timeout_s, **options)


# a file being opened (dataset, recipe, preset) may not set these: they choose the program run (env: LD_PRELOAD)
make_external_solver.exec_options = ("command", "cwd", "env")  # type: ignore[attr-defined]
