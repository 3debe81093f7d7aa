"""generate: keyed by the recipe's hash, locked, exact resume under SIGINT/SIGTERM/SIGKILL (issue 21 findings 4-7);
dataset and run hashes cover the adapter's code (issue 23 item 7); compare's shared data cache (issue 23 item 5)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from sciml_zoo.compare import run_comparison
from sciml_zoo.data.generate import dataset_key, generate_dataset, partial_path, stored_key
from sciml_zoo.data.loading import load_dataset, source_solver
from sciml_zoo.errors import ConfigError, DataError
from sciml_zoo.experiment import load_experiment, load_recipe
from sciml_zoo.paths import file_lock
from sciml_zoo.provenance import code_fingerprint
from sciml_zoo.registry import SolverTrust, solver_trust
from sciml_zoo.runs import RunConfig, config_hash

ASSETS = Path(__file__).parent / "assets"


def content(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """The stored arrays (with their attributes) and the file's attributes, except the wall-clock one."""
    with h5py.File(path, "r") as f:
        arrays = {k: f[k][...] for k in f}
        attrs = {f"{k}.{a}": f[k].attrs[a] for k in f for a in f[k].attrs}
        attrs |= {k: f.attrs[k] for k in f.attrs if k != "generation_seconds_this_run"}
    return arrays, attrs


def assert_same_content(path: Path, reference: Path) -> None:
    arrays, attrs = content(path)
    ref_arrays, ref_attrs = content(reference)
    assert arrays.keys() == ref_arrays.keys() and attrs == ref_attrs
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, ref_arrays[k], err_msg=k)


def leftovers(out: Path) -> list[str]:
    """The tool's own temporaries and checkpoint beside ``out``."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".partial"))


# ---- finding 4: keyed by the recipe's hash ---------------------------------------------------------------------


def test_a_file_of_another_recipe_is_regenerated_not_kept(tmp_path, toy_recipe, toy_dataset, capsys):
    from sciml_zoo.cli import main

    out = tmp_path / "toy.h5"
    generate_dataset(toy_recipe, out, progress=False)
    other = replace(toy_recipe, train_params=((0.003,), (0.007,), (0.011,)), num_frames=12)
    assert dataset_key(other) != dataset_key(toy_recipe) == stored_key(out) == load_dataset(toy_dataset).hash
    generate_dataset(other, out, progress=False)  # audit: "dataset written", file unchanged
    data = load_dataset(out)
    assert data.recipe == other and data.hash == dataset_key(other) and data.train.states.shape[1] == 12
    np.testing.assert_allclose(data.train.params[:, 0].numpy(), [0.003, 0.007, 0.011])
    # checkpoint_every only changes when progress is saved: same data, same hash, nothing regenerated
    assert dataset_key(replace(other, checkpoint_every=3)) == dataset_key(other)
    mtime = out.stat().st_mtime_ns
    generate_dataset(replace(other, checkpoint_every=3), out, progress=False)
    assert out.stat().st_mtime_ns == mtime

    # the CLI says which of the three happened
    recipe = tmp_path / "r.toml"
    recipe.write_text((ASSETS / "toy.toml").read_text())
    capsys.readouterr()
    assert main(["generate", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"dataset regenerated: {out} (hash {dataset_key(toy_recipe)}")
    assert main(["generate", str(recipe), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"dataset up to date: {out}")
    assert_same_content(out, toy_dataset)


def test_a_file_that_is_not_a_dataset_is_refused_unless_overwrite(tmp_path, toy_recipe, toy_dataset, capsys):
    from sciml_zoo.cli import main

    out = tmp_path / "mine.h5"
    out.write_text("a user's own file")
    with pytest.raises(DataError, match="not a dataset made by `sciml-zoo generate`; pass --overwrite"):
        generate_dataset(toy_recipe, out, progress=False)
    assert out.read_text() == "a user's own file"
    assert main(["generate", str(ASSETS / "toy.toml"), "--out", str(out), "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with h5py.File(out, "w") as f:  # another program's HDF5 file, with a 'hash' of its own
        f.attrs["hash"] = json.dumps("0123456789abcdef")
    with pytest.raises(DataError, match="not a dataset made by"):
        generate_dataset(toy_recipe, out, progress=False)
    generate_dataset(toy_recipe, out, progress=False, overwrite=True)
    assert_same_content(out, toy_dataset)


# ---- finding 5: compare does not reuse a stale dataset or stale runs -------------------------------------------


def test_compare_after_the_recipe_changed_neither_reuses_data_nor_runs(tmp_path):
    fast = ["train.iterations=2", "train.checkpoint_every=1", "eval_steps=4"]
    exp = load_experiment(str(ASSETS / "toy_preset.toml"), overrides=fast, only=["non"])
    out = tmp_path / "cmp"
    first = run_comparison(exp, out, progress=False, shared_data=None)
    assert first["dataset"]["hash"] == dataset_key(exp.recipe)
    edited = replace(exp, recipe=replace(exp.recipe, num_frames=20, train_params=((0.003,), (0.005,), (0.009,))))
    with pytest.raises(ConfigError, match="different config, dataset or code"):  # audit: old data and runs, exit 0
        run_comparison(edited, out, progress=False, shared_data=None)
    record = run_comparison(edited, out, progress=False, force=True, shared_data=None)
    data = load_dataset(record["dataset"]["path"])
    assert data.hash == record["dataset"]["hash"] == dataset_key(edited.recipe) != first["dataset"]["hash"]
    assert data.train.states.shape[1] == 20 and record["dataset"]["recipe"].num_frames == 20
    assert record["runs"][0]["hash"] != first["runs"][0]["hash"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["dataset"]["recipe"]["train_params"] == [[0.003], [0.005], [0.009]]


def test_the_run_hash_covers_the_dataset_hash():
    """Finding 14: dropping the dataset hash from the run hash must fail a default test."""
    config = RunConfig("data/x.h5")
    assert config_hash(config, "a" * 16) != config_hash(config, "b" * 16)
    assert config_hash(replace(config, data="elsewhere.h5"), "a" * 16) == config_hash(config, "a" * 16)


# ---- finding 6: one writer per output ------------------------------------------------------------------------


def test_generate_is_locked_and_refuses_a_symlinked_lock(tmp_path, toy_recipe):
    out = tmp_path / "toy.h5"
    with file_lock(tmp_path / ".toy.h5.lock", what="held by the test"):
        code = f"""
from sciml_zoo.cli import main
raise SystemExit(main(["generate", {str(ASSETS / "toy.toml")!r}, "--out", {str(out)!r}, "--quiet"]))
"""
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert f"dataset {str(out)!r} is being written by another process (pid {os.getpid()})" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
        with pytest.raises(ConfigError, match="being written by another process"):  # also within one process
            generate_dataset(toy_recipe, out, progress=False)
    victim = tmp_path / "important.txt"
    victim.write_text("keep me")
    (tmp_path / ".toy.h5.lock").unlink()
    (tmp_path / ".toy.h5.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link; refusing to write through it"):
        generate_dataset(toy_recipe, out, progress=False)
    assert victim.read_text() == "keep me" and not out.exists()


# ---- finding 7: exact resume, SIGTERM like SIGINT, no temporaries left -----------------------------------------


def _fork_generate(recipe, out: Path) -> int:
    """Run generate_dataset in a forked child (no interpreter start-up: torch is already imported)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.signal(signal.SIGINT, signal.default_int_handler)  # what the CLI process has
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        code = 1
        try:  # like cli.main: KeyboardInterrupt (or Interrupted, with its signal) becomes the exit code
            generate_dataset(recipe, out, progress=False)
            code = 0
        except KeyboardInterrupt as exc:
            code = 128 + getattr(exc, "signum", signal.SIGINT)
        except BaseException:  # noqa: BLE001 - any other failure is a test failure, seen in the exit code
            code = 1
        finally:  # no Python call before os._exit: a late signal cannot raise here and escape into pytest
            os._exit(code)
    return pid


def kill_and_resume(run, reference: Path, out: Path, *, kills: int, window: tuple[float, float], seed: int):
    """Kill ``run`` (which starts generating ``out`` and returns a Popen-like handle) ``kills`` times with
    SIGINT, SIGTERM and SIGKILL in turn, 1-3 kills per file, then finish it: each finished file must equal
    ``reference`` and leave nothing behind. A kill comes at a random time in ``window`` (seconds) after the
    run's checkpoint exists: the first kill of a file lands in the generation loop, later ones anywhere.
    Returns counts per signal of kills sent and landed (the run had not finished), and the number of
    temporaries killed runs left that the reruns removed."""
    rng = random.Random(seed)
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    landed = {s.name: 0 for s in signals}
    sent = {s.name: 0 for s in signals}
    codes: list[int | None] = []
    cleaned = files = done = 0
    while done < kills:
        for p in list(out.parent.iterdir()):
            p.unlink()
        for _ in range(min(rng.randint(1, 3), kills - done)):
            sig = signals[done % 3]
            handle = run()
            deadline = time.monotonic() + 120  # wait until it generates (or resumes), whatever the machine's load
            while not partial_path(out).exists() and handle.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(*window))
            handle.send_signal(sig)
            code = handle.wait()
            done += 1
            sent[sig.name] += 1
            codes.append(code)
            if code != 0:  # finished before the signal: the kill did not land
                landed[sig.name] += 1
                assert code in (128 + sig, -sig), (sig.name, code)  # SIGTERM saves and exits like SIGINT
            cleaned += len([n for n in leftovers(out) if n.endswith(".tmp")])
        final = run()
        assert final.wait() == 0, final.stderr.read() if getattr(final, "stderr", None) else None  # resumes, finishes
        files += 1
        assert_same_content(out, reference)
        assert leftovers(out) == []  # no checkpoint, no temporary
    return {"sent": sent, "landed": landed, "files": files, "temporaries_removed": cleaned, "codes": codes}


class _Forked:
    """A forked child with the bits of ``subprocess.Popen`` the kill test uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            self.code = os.waitstatus_to_exitcode(status) if pid else None
        return self.code

    def send_signal(self, sig: int) -> None:
        if self.code is None:
            os.kill(self.pid, sig)

    def wait(self) -> int:
        if self.code is None:
            self.code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.code


def _kill_recipe(toy_recipe, frames: int):
    return replace(toy_recipe, name="kill", num_frames=frames, checkpoint_every=37)


def test_generate_killed_at_random_times_resumes_to_the_same_file(tmp_path, toy_recipe):
    """12 kills (4 SIGINT, 4 SIGTERM, 4 SIGKILL) of forked generate runs, each file finished by a rerun."""
    recipe = _kill_recipe(toy_recipe, 600)
    reference = generate_dataset(recipe, tmp_path / "ref" / "kill.h5", progress=False)
    out = tmp_path / "runs" / "kill.h5"
    out.parent.mkdir()
    seconds = []  # an uninterrupted run's time, the shorter of two (a load spike makes kills come too late)
    for attempt in range(2):
        t0 = time.perf_counter()
        generate_dataset(recipe, tmp_path / f"timing{attempt}" / "kill.h5", progress=False)
        seconds.append(time.perf_counter() - t0)
    stats = kill_and_resume(
        lambda: _Forked(_fork_generate(recipe, out)), reference, out, kills=12, window=(0.0, 0.4 * min(seconds)), seed=0
    )
    print(stats)
    assert sum(stats["landed"].values()) >= 4, stats  # kills land while generating (most do, even under load)


def test_stale_temporaries_of_a_killed_run_are_removed_and_others_kept(tmp_path, toy_recipe, toy_dataset):
    out = tmp_path / "toy.h5"
    ours = [tmp_path / ".toy.h5.abcd_123.tmp", tmp_path / ".toy.h5.partial.x1y2z3w4.tmp"]
    theirs = [tmp_path / ".toy.h5.x.h5.abcd1234.tmp", tmp_path / ".other.h5.abcd1234.tmp", tmp_path / "notes.tmp"]
    for p in ours + theirs:
        p.write_text("left by kill -9")
    generate_dataset(toy_recipe, out, progress=False)
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)
    assert_same_content(out, toy_dataset)


@pytest.mark.slow
def test_cli_generate_killed_30_times_resumes_to_the_same_file(tmp_path, toy_recipe):
    """The audit's reproduction with real processes: `sciml-zoo generate`, 10 kills of each signal."""
    recipe_file = tmp_path / "kill.toml"
    recipe_file.write_text(
        (ASSETS / "toy.toml")
        .read_text()
        .replace('name = "toy"', 'name = "kill"')
        .replace("num_frames = 30", "num_frames = 4000")
        .replace("checkpoint_every = 7", "checkpoint_every = 97")
    )
    out = tmp_path / "runs" / "kill.h5"
    out.parent.mkdir()
    cmd = [sys.executable, "-m", "sciml_zoo.cli", "generate", str(recipe_file), "--out", str(out), "--quiet"]
    reference = tmp_path / "ref" / "kill.h5"
    assert subprocess.run([*cmd[:-3], "--out", str(reference), "--quiet"], capture_output=True).returncode == 0
    t0 = time.perf_counter()  # the generation loop's time (the window starts when its checkpoint exists)
    generate_dataset(load_recipe(str(recipe_file)), tmp_path / "timing" / "kill.h5", progress=False)
    seconds = time.perf_counter() - t0
    stats = kill_and_resume(
        lambda: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
        reference,
        out,
        kills=30,
        window=(0.0, 0.6 * seconds),
        seed=1,
    )
    print(stats)
    assert sum(stats["landed"].values()) >= 15, stats


# ---- issue 23 item 7: the adapter's code is part of every hash -------------------------------------------------

ADAPTER = """
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

DT_SCALE = {scale}


def make(*, resolution, dt=0.002):
    import numpy  # a lazy import: its version is recorded too
    return ToyDiffusion(resolution=resolution, dt=dt * DT_SCALE)
"""


def test_editing_the_adapter_invalidates_data_and_runs(tmp_path, monkeypatch):
    script = tmp_path / "my_adapter.py"
    script.write_text(ADAPTER.format(scale=1.0))
    (tmp_path / "helper_unused.py").write_text("X = 1\n")
    recipe = (ASSETS / "toy.toml").read_text().replace('"toy-diffusion"', f'"{script}:make"')
    recipe = recipe.replace("num_frames = 30", "num_frames = 12")
    (tmp_path / "recipe.toml").write_text(recipe)
    preset = (ASSETS / "toy_preset.toml").read_text().replace('"toy.toml"', '"recipe.toml"')
    (tmp_path / "preset.toml").write_text(preset)
    fast = ["train.iterations=2", "train.checkpoint_every=1", "eval_steps=4"]
    exp = load_experiment(str(tmp_path / "preset.toml"), overrides=fast, only=["non"])
    out = tmp_path / "data" / "toy.h5"
    monkeypatch.chdir(tmp_path)
    with solver_trust(SolverTrust(allow_exec=True)):
        generate_dataset(exp.recipe, out, progress=False)
        fingerprint = json.loads(load_dataset(out).attrs["code"])
        assert list(fingerprint["files"]) == ["my_adapter.py"] and "numpy" in fingerprint["packages"]
        first = run_comparison(exp, tmp_path / "cmp", progress=False)
        assert first["dataset"]["path"] == str(Path("data") / "toy.h5")  # issue 23 item 5: generate's file reused
        assert not (tmp_path / "cmp" / "data").exists()
        key = stored_key(out)

        script.write_text(ADAPTER.format(scale=1.5))  # one constant edited
        assert dataset_key(exp.recipe) != key
        with pytest.raises(DataError, match=r"generated by other code of solver .*\(my_adapter.py changed since\)"):
            source_solver(load_dataset(out))  # train / evaluate on the old file: one line
        with pytest.raises(ConfigError, match="different config, dataset or code"):  # compare: old runs refused
            run_comparison(exp, tmp_path / "cmp", progress=False)
        record = run_comparison(exp, tmp_path / "cmp", progress=False, force=True)
        assert record["dataset"]["path"] == str(tmp_path / "cmp" / "data" / "toy.h5")  # stale shared file not used
        assert record["dataset"]["hash"] == dataset_key(exp.recipe) != key
        assert record["runs"][0]["hash"] != first["runs"][0]["hash"]
        assert stored_key(out) == key  # compare never overwrites the shared file: other results may use it
        generate_dataset(exp.recipe, out, progress=False)  # generate regenerates the edited adapter's data
        assert stored_key(out) == record["dataset"]["hash"]


def test_code_fingerprint_follows_package_imports_and_records_versions():
    from sciml_zoo_solvers.gray_scott import make_gray_scott_solver

    fp = code_fingerprint(make_gray_scott_solver)
    assert set(fp["files"]) == {"sciml_zoo_solvers/gray_scott.py", "sciml_zoo_solvers/_grid.py"}
    assert fp["packages"]["torch"] and fp["packages"]["numpy"] and fp["packages"]["sciml-zoo"]
    assert code_fingerprint(make_gray_scott_solver) == fp
