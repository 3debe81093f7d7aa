"""Opening files never starts programs or imports code (issue 11 item 2).

A dataset's ``recipe`` attribute, a preset and a recipe TOML may name only
registered solvers and set no option that runs a program; the user lifts this
on the command line (``--allow-exec``, ``--solver``, ``--solver-option``).
Recipe names resolve only to the package's own recipes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from pathlib import Path

import h5py
import pytest

from sciml_zoo import registry
from sciml_zoo.cli import main
from sciml_zoo.errors import ConfigError
from sciml_zoo.experiment import RECIPE_DIR, find_recipe, load_recipe
from sciml_zoo.registry import SolverTrust, make_solver, make_solver_from_file, solver_trust
from sciml_zoo_solvers.toy_diffusion import make_toy_solver


def _with_recipe(src: Path, dst: Path, **changes: object) -> Path:
    """Copy a dataset file and rewrite its ``recipe`` attribute."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        recipe = json.loads(f.attrs["recipe"])
        recipe.update(changes)
        f.attrs["recipe"] = json.dumps(recipe)
    return dst


def _one_line(capsys: pytest.CaptureFixture[str], needle: str) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0], err
    return err[0]


@pytest.fixture
def pwned_dataset(tmp_path: Path, toy_dataset: Path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    options = {"command": ["/bin/sh", "-c", f"touch {marker}"], "dt": 0.002}
    return _with_recipe(toy_dataset, tmp_path / "evil.h5", solver="external", solver_options=options), marker


def test_malicious_dataset_runs_nothing_in_evaluate(pwned_dataset, capsys, monkeypatch, tmp_path) -> None:
    data, marker = pwned_dataset
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--data", str(data), "--steps", "3"]) == 2
    line = _one_line(capsys, "sets solver option(s) command of 'external', which run a program")
    assert "--allow-exec" in line and "evil.h5" in line
    assert not marker.exists()


def test_malicious_dataset_runs_nothing_in_train(pwned_dataset, capsys, monkeypatch, tmp_path) -> None:
    data, marker = pwned_dataset
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--method", "zo-sol", "--iterations", "1"]
    assert main([*args, "--quiet"]) == 2
    _one_line(capsys, "which run a program")
    assert not marker.exists()


def test_dataset_naming_code_is_refused(tmp_path, toy_dataset, capsys) -> None:
    marker = tmp_path / "IMPORTED"
    script = tmp_path / "evil.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\ndef make(**kw):\n    raise SystemExit(9)\n")
    for solver in (f"{script}:make", "os:system"):
        data = _with_recipe(toy_dataset, tmp_path / "code.h5", solver=solver)
        assert main(["evaluate", "--data", str(data), "--steps", "3"]) == 2
        _one_line(capsys, "which imports code; a file being opened may name only registered solvers")
    assert not marker.exists()


def test_cwd_datasets_folder_does_not_shadow_builtin_recipes(tmp_path, monkeypatch) -> None:
    (tmp_path / "datasets").mkdir()
    evil = 'solver = "external"\n[dataset.solver_options]\ncommand = ["/bin/sh", "-c", "touch PWNED"]\n'
    (tmp_path / "datasets" / "wake_quick.toml").write_text("[dataset]\nname = 'wake_quick'\n" + evil)
    (tmp_path / "datasets" / "mine.toml").write_text("[dataset]\nname = 'mine'\n" + evil)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCIML_ZOO_DATASETS", str(tmp_path / "datasets"))
    assert find_recipe("wake_quick") == RECIPE_DIR / "wake_quick.toml"
    assert load_recipe("wake_quick").solver == "phiflow-wake"
    with pytest.raises(ConfigError, match="recipe 'mine' not found; built-in recipes: .*give its path"):
        find_recipe("mine")
    assert find_recipe("datasets/mine.toml") == Path("datasets/mine.toml")  # a path the user gives is used


def test_planted_binary_in_build_dir_from_recipe_is_never_run(tmp_path, capsys) -> None:
    from sciml_zoo_solvers import c_build

    marker = tmp_path / "RAN"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    try:  # the name build_example_solver would look for (any compiler): plant it under every candidate
        cc = c_build._compiler()
        source = c_build.example_source().read_bytes()
        key = source + "\0".join([*cc, *c_build._FLAGS, *c_build._LIBS]).encode()
        names = {f"burgers2d-{hashlib.sha256(key).hexdigest()[:16]}"}
    except Exception:
        names = {"burgers2d-planted"}
    for name in names:
        exe = bin_dir / name
        exe.write_text(f"#!/bin/sh\ntouch {marker}\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[dataset]\nname = 'b'\nsolver = 'burgers-c'\nsource_resolution = [8, 8]\nreference_resolution = [16, 16]\n"
        "param_names = ['nu']\ntrain_params = [[0.01]]\ntest_params = [[0.02]]\nnum_frames = 3\n"
        f"[dataset.solver_options]\nbuild_dir = {json.dumps(str(bin_dir))}\n"
    )
    assert main(["generate", str(recipe), "--out", str(tmp_path / "b.h5"), "--quiet"]) == 2
    _one_line(capsys, "sets solver option(s) build_dir of 'burgers-c'")
    assert not marker.exists() and not (tmp_path / "b.h5").exists()


def _fake_exec_factory(calls: list[dict]):
    def factory(**options):
        calls.append(options)
        return make_toy_solver(resolution=options["resolution"])

    factory.exec_options = ("command",)  # type: ignore[attr-defined]
    return factory


def test_user_opt_in_lifts_the_refusal(monkeypatch) -> None:
    calls: list[dict] = []
    monkeypatch.setitem(registry._RUNTIME, "fake-exec", _fake_exec_factory(calls))
    opts = {"command": ["./evil"], "resolution": (8, 8)}
    with pytest.raises(ConfigError, match="dataset 'x.h5' sets solver option"):
        make_solver_from_file("fake-exec", opts, origin="dataset 'x.h5'")
    assert calls == []
    with solver_trust(SolverTrust(options={"command": ["./mine"]})):  # --solver-option command=...
        make_solver_from_file("fake-exec", opts, origin="dataset 'x.h5'")
    assert calls[-1]["command"] == ["./mine"]
    with solver_trust(SolverTrust(allow_exec=True)):  # --allow-exec
        make_solver_from_file("fake-exec", opts, origin="dataset 'x.h5'")
    assert calls[-1]["command"] == ["./evil"]
    make_solver("fake-exec", **opts)  # Python callers hold their own options
    assert len(calls) == 3


def test_module_or_script_factory_given_by_the_user(tmp_path) -> None:
    script = tmp_path / "my_adapter.py"
    script.write_text(
        "from sciml_zoo_solvers.toy_diffusion import make_toy_solver\n"
        "def make(*, resolution, **kw):\n    return make_toy_solver(resolution=resolution, **kw)\n"
    )
    solver = make_solver(f"{script}:make", resolution=(8, 8))
    assert tuple(solver.state_shape[1:]) == (8, 8)
    assert make_solver("sciml_zoo_solvers.toy_diffusion:make_toy_solver", resolution=(8, 8)) is not None
    with solver_trust(SolverTrust(solver=f"{script}:make")):  # --solver path.py:make replaces the file's name
        assert make_solver_from_file("toy-diffusion", {"resolution": (8, 8)}, origin="dataset 'x'") is not None
    with pytest.raises(ConfigError, match="has no callable 'nope'"):
        make_solver(f"{script}:nope", resolution=(8, 8))


def test_user_solver_flag_on_the_cli(tmp_path, toy_dataset, capsys) -> None:
    data = _with_recipe(toy_dataset, tmp_path / "code.h5", solver="sciml_zoo_solvers.toy_diffusion:make_toy_solver")
    assert main(["evaluate", "--data", str(data), "--steps", "2"]) == 2
    capsys.readouterr()
    assert main(["evaluate", "--data", str(data), "--steps", "2", "--allow-exec"]) == 0
    assert main(["evaluate", "--data", str(data), "--steps", "2", "--solver", "toy-diffusion"]) == 0
    assert "| SRC |" in capsys.readouterr().out


def test_missing_optional_dependency_names_the_extra(monkeypatch) -> None:
    def factory(**options):
        raise ModuleNotFoundError("No module named 'phi'", name="phi")

    monkeypatch.setitem(registry._RUNTIME, "needs-phi", factory)
    with pytest.raises(ConfigError, match=r"pip install 'sciml-zoo\[phiflow\]'"):
        make_solver("needs-phi")


def test_wake_without_phiflow_names_the_extra(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "phi" else real(name, *a))
    from sciml_zoo.errors import SciMLZooError

    with pytest.raises(SciMLZooError, match=r"needs PhiFlow; install it with pip install 'sciml-zoo\[phiflow\]'"):
        make_solver("phiflow-wake", resolution=(8, 16))


def test_worker_processes_get_the_checked_spec_not_the_files(monkeypatch) -> None:
    """Process/Dask workers build the solver from the parent's resolved spec: the user's options win,
    and a file's program-running option is refused there too."""
    from sciml_zoo import faults
    from sciml_zoo.config import TrainConfig
    from sciml_zoo.faults import FaultCounts
    from sciml_zoo.train.queries import make_query_step

    calls: list[dict] = []
    monkeypatch.setitem(registry._RUNTIME, "fake-exec", _fake_exec_factory(calls))
    seen: list[tuple] = []
    monkeypatch.setattr(faults, "make_query_step", lambda solver, **kw: seen.append(kw["solver_spec"]))
    solver = make_toy_solver(resolution=(8, 8))
    cfg = TrainConfig(method="zo-sol", executor="process", workers=1)
    spec = ("fake-exec", {"command": ["./evil"], "resolution": (8, 8)})

    class _Counts:
        inner = FaultCounts()

    with pytest.raises(ConfigError, match="sets solver option"):
        make_query_step(cfg, solver, spec, _Counts())  # type: ignore[arg-type]
    with solver_trust(SolverTrust(options={"command": ["./mine"]})):
        make_query_step(cfg, solver, spec, _Counts())  # type: ignore[arg-type]
    assert seen == [("fake-exec", {"command": ["./mine"], "resolution": (8, 8)})]


def test_malicious_preset_recipe_runs_nothing_in_compare(tmp_path, capsys, monkeypatch) -> None:
    marker = tmp_path / "PWNED"
    (tmp_path / "evil.toml").write_text(
        "[dataset]\nname = 'evil'\nsolver = 'external'\nsource_resolution = [8, 8]\nreference_resolution = [8, 8]\n"
        "param_names = ['p']\ntrain_params = [[1.0]]\ntest_params = [[2.0]]\nnum_frames = 3\n"
        f"[dataset.solver_options]\ncommand = ['/bin/sh', '-c', 'touch {marker}']\n"
    )
    (tmp_path / "preset.toml").write_text("dataset = 'evil.toml'\n[methods.non]\nmethod = 'non'\n")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "--preset", str(tmp_path / "preset.toml"), "--quiet"]) == 2
    _one_line(capsys, "recipe 'evil' sets solver option(s) command of 'external'")
    assert not marker.exists()
