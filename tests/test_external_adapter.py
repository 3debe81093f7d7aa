"""The external-program adapter: protocol, worker/file modes, faults, cleanup.

The example C solver is compiled with the system compiler into a temporary
directory; tiny Python programs (run with ``sys.executable``) play misbehaving
solvers in other languages.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from sciml_zoo.errors import SolverError
from sciml_zoo_solvers.c_build import build_example_solver, make_burgers_c_solver
from sciml_zoo_solvers.external import ExternalSolver, make_external_solver, pack_message, unpack_header

RES = (16, 16)
NU = torch.tensor([[0.01], [0.05]])

FAKE = textwrap.dedent(
    """
    import struct, sys, time
    from array import array
    HDR = struct.Struct("<4sIIIII")
    behaviour = sys.argv[1]
    files = sys.argv[2:]
    inp = open(files[0], "rb") if files else sys.stdin.buffer
    out = sys.stdout.buffer
    while True:
        head = inp.read(24)
        if len(head) < 24:
            break
        magic, version, c, h, w, p = HDR.unpack(head)
        n = c * h * w
        data = array("d", inp.read(8 * (n + p)))
        state, scale = data[:n], data[n] if p else 1.0
        print("fake solver got a request", file=sys.stderr, flush=True)
        if behaviour == "short":
            out = open(files[1], "wb") if files else out
            out.write(HDR.pack(magic, version, c, h, w, 0) + state[:1].tobytes())
            out.flush()
            sys.exit(0)
        if behaviour == "wrongshape":
            h += 1
        if behaviour == "silent-exit":
            sys.exit(0)
        if files:
            out = open(files[1], "wb")
        out.write(HDR.pack(magic, version, c, h, w, 0))
        out.write(array("d", [x * scale for x in state]).tobytes())
        out.flush()
        if files:
            break
    """
)


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example_solver(tmp_path_factory.mktemp("bin"))


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fake") / "fake_solver.py"
    path.write_text(FAKE)
    return path


def burgers(exe: Path, **options: object):
    return make_burgers_c_solver(resolution=RES, build_dir=exe.parent, **options)


def initial(solver) -> torch.Tensor:
    return solver.initial_state(NU, seed=0)


# ---------------------------------------------------------------------------- build, protocol
def test_build_is_cached(exe: Path) -> None:
    again = build_example_solver(exe.parent)
    assert again == exe and again.stat().st_mtime == exe.stat().st_mtime
    assert exe.name.startswith("burgers2d-") and os.access(exe, os.X_OK)


def test_header_round_trip() -> None:
    msg = pack_message(torch.zeros(2, 3, 4).numpy(), torch.ones(1).numpy())
    assert len(msg) == 24 + 8 * 24 + 8
    assert unpack_header(msg) == (2, 3, 4, 1)
    with pytest.raises(ValueError, match="protocol header"):
        unpack_header(b"hello world, not a header")
    with pytest.raises(ValueError, match="shorter than the 24-byte header"):
        unpack_header(b"SZIO")


def test_command_must_be_a_list(exe: Path) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        ExternalSolver(command=f"{exe} --dt 0.1", resolution=RES)  # type: ignore[arg-type]


def test_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    solver = make_external_solver(command=[str(tmp_path / "nope")], resolution=RES)
    with pytest.raises(SolverError, match="could not be started.*exists and is executable"):
        solver.step(torch.zeros(1, 1, 16, 16), torch.ones(1, 1))


def test_python_worker_speaks_the_protocol(fake: Path) -> None:
    with make_external_solver(
        command=[sys.executable, str(fake), "scale"],
        resolution=(5, 3),
        channels=2,
        param_names=("scale",),
    ) as solver:
        x = torch.randn(3, 2, 3, 5)
        p = torch.tensor([[2.0], [-1.0], [0.5]])
        torch.testing.assert_close(solver.step(x, p), x * p.view(-1, 1, 1, 1))
        assert solver.pid is not None and solver.restarts == 0


# ---------------------------------------------------------------------------- the C solver
def test_worker_and_file_modes_agree(exe: Path) -> None:
    with burgers(exe) as worker, burgers(exe, mode="file") as files:
        a = b = initial(worker)
        for _ in range(3):
            a, b = worker.step(a, NU), files.step(b, NU)
        assert torch.equal(a, b)
        assert float((a - initial(worker)).abs().max()) > 1e-3  # it did evolve


def test_burgers_physics_energy_decays(exe: Path) -> None:
    with burgers(exe) as solver:
        x = initial(solver)
        energies = [float(x.pow(2).mean())]
        for _ in range(5):
            x = solver.step(x, NU)
            energies.append(float(x.pow(2).mean()))
        assert all(e1 < e0 for e0, e1 in zip(energies, energies[1:], strict=False))
        assert float(x.abs().max()) <= 1.0 + 1e-5  # upwind + SSP-RK2: maximum principle


def test_coarse_run_has_a_bounded_correctable_error(exe: Path) -> None:
    """64×64 reference vs 32×32 source, dt = 0.1, 20 steps (t = 2)."""
    nu = torch.tensor([[0.005], [0.02], [0.05]])
    with (
        make_burgers_c_solver(resolution=(64, 64), build_dir=exe.parent) as fine,
        make_burgers_c_solver(resolution=(32, 32), build_dir=exe.parent) as coarse,
    ):
        f = fine.initial_state(nu, seed=0)
        c = fine.restrict(f, (32, 32))
        for _ in range(20):
            f, c = fine.step(f, nu), coarse.step(c, nu)
        ref = fine.restrict(f, (32, 32))
        rel = (c - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
        assert bool((rel > 0.03).all()) and bool((rel < 0.5).all()), rel
        assert float(c.abs().max()) <= 1.0 + 1e-5


# ---------------------------------------------------------------------------- faults
def test_crash_names_call_member_and_stderr_then_restarts(exe: Path) -> None:
    with burgers(exe, fault="crash-after=1") as solver:
        x = initial(solver)
        with pytest.raises(SolverError) as err:
            solver.step(x, NU)  # member 0 answered, member 1 crashes
        msg = str(err.value)
        assert "call 1, batch member 1" in msg and "SIGABRT" in msg and "injected crash" in msg
        assert "burgers-c" in msg
        torch.testing.assert_close(solver.step(x[:1], NU[:1]), burgers(exe).step(x[:1], NU[:1]))
        assert solver.restarts == 1


def test_worker_killed_between_calls_restarts_silently(exe: Path) -> None:
    with burgers(exe) as solver:
        x = initial(solver)
        first = solver.step(x, NU)
        os.kill(solver.pid, signal.SIGKILL)
        time.sleep(0.1)
        assert torch.equal(solver.step(x, NU), first)
        assert solver.restarts == 1


def test_worker_killed_mid_call_gives_clear_error(exe: Path) -> None:
    with burgers(exe, fault="hang-after=1", timeout_s=30) as solver:
        x = initial(solver)[:1]
        solver.step(x, NU[:1])
        timer = threading.Timer(0.5, os.kill, args=(solver.pid, signal.SIGKILL))
        timer.start()
        start = time.monotonic()
        with pytest.raises(SolverError, match="stopped before replying: it was killed by SIGKILL"):
            solver.step(x, NU[:1])
        assert time.monotonic() - start < 10
        timer.join()


def test_hang_times_out_kills_and_restarts(exe: Path) -> None:
    with burgers(exe, fault="hang-after=1", timeout_s=0.5) as solver:
        x = initial(solver)[:1]
        solver.step(x, NU[:1])
        pid = solver.pid
        start = time.monotonic()
        with pytest.raises(SolverError) as err:
            solver.step(x, NU[:1])
        assert time.monotonic() - start < 3
        msg = str(err.value)
        assert "did not answer within timeout_s=0.5 s" in msg and "call 2, batch member 0" in msg
        assert "injected hang" in msg
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the hung worker is gone
        solver.step(x, NU[:1])  # a fresh worker answers
        assert solver.restarts == 1


def test_garbage_reply_is_malformed_then_restarts(exe: Path) -> None:
    with burgers(exe, fault="garbage-after=1") as solver:
        x = initial(solver)[:1]
        solver.step(x, NU[:1])
        with pytest.raises(SolverError, match="malformed reply.*protocol header.*this is not a rep"):
            solver.step(x, NU[:1])
        solver.step(x, NU[:1])


def test_nonzero_exit_reports_status_and_stderr(exe: Path) -> None:
    with burgers(exe, fault="exit-after=0") as solver:
        with pytest.raises(SolverError, match=r"(?s)exited with status 3.*injected failure"):
            solver.step(initial(solver), NU)


def test_nan_reply_is_reported(exe: Path) -> None:
    with burgers(exe, fault="nan-after=1") as solver:
        x = initial(solver)
        with pytest.raises(SolverError, match="call 1, batch member 1: returned NaN/Inf"):
            solver.step(x, NU)
        assert torch.isfinite(solver.step(x, NU)).all()


def test_short_and_wrongly_shaped_replies(fake: Path) -> None:
    with make_external_solver(command=[sys.executable, str(fake), "short"], resolution=(4, 4)) as solver:
        with pytest.raises(SolverError, match="stopped before replying: it exited with status 0"):
            solver.step(torch.ones(1, 1, 4, 4), torch.ones(1, 1))
    with make_external_solver(command=[sys.executable, str(fake), "wrongshape"], resolution=(4, 4)) as solver:
        with pytest.raises(SolverError, match="header says C,H,W,P = 1,5,4,0, expected 1,4,4,0"):
            solver.step(torch.ones(1, 1, 4, 4), torch.ones(1, 1))


def test_file_mode_faults(exe: Path, fake: Path) -> None:
    x = initial(burgers(exe))
    with pytest.raises(SolverError, match=r"(?s)exited with status 3.*file mode.*injected"):
        burgers(exe, mode="file", fault="exit-after=0").step(x, NU)
    with pytest.raises(SolverError, match="did not finish within timeout_s=0.5 s"):
        burgers(exe, mode="file", fault="hang-after=0", timeout_s=0.5).step(x, NU)
    with pytest.raises(SolverError, match="malformed reply"):
        burgers(exe, mode="file", fault="garbage-after=0").step(x, NU)
    silent = make_external_solver(command=[sys.executable, str(fake), "silent-exit"], resolution=(4, 4), mode="file")
    with pytest.raises(SolverError, match="wrote no output file"):
        silent.step(torch.ones(1, 1, 4, 4), torch.ones(1, 1))


# ---------------------------------------------------------------------------- cleanup
def test_close_and_del_stop_the_worker(exe: Path) -> None:
    solver = burgers(exe)
    solver.step(initial(solver), NU)
    pid = solver.pid
    solver.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    solver.close()  # idempotent
    other = burgers(exe)
    other.step(initial(other), NU)
    pid = other.pid
    del other
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_pickled_copy_starts_its_own_worker(exe: Path) -> None:
    with burgers(exe) as solver:
        x = initial(solver)
        first = solver.step(x, NU)
        with pickle.loads(pickle.dumps(solver)) as copy:
            assert copy.pid is None
            assert torch.equal(copy.step(x, NU), first) and copy.pid != solver.pid
