"""Nothing a file names is written or deleted outside its root (issue 21 findings 1-3).

A preset's method key, a recipe's name and a preset's file name become paths
only through :mod:`sciml_zoo.paths`; a symlinked ``.lock`` is refused, never
written through; ``--force`` deletes only folders holding the tool's marker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sciml_zoo.cli import main
from sciml_zoo.compare import _run_dir
from sciml_zoo.errors import ConfigError
from sciml_zoo.experiment import load_experiment, load_recipe
from sciml_zoo.paths import MARKER, check_name, is_tool_dir, make_tool_dir, remove_tool_dir, safe_child
from sciml_zoo.runs import run_lock

ASSETS = Path(__file__).parent / "assets"
RECIPE = (ASSETS / "toy.toml").read_text()

BAD_NAMES = [
    "/tmp/victim",
    "../../victim",
    "../../../../tmp/x",
    "..",
    ".",
    "",
    "a/b",
    "a\\b",
    "~/x",
    "C:evil",
    ".hidden",
    "-rf",
    "a b",
    "x" * 200,
    "nul\x00",
    5,
    None,
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:20] for n in BAD_NAMES])
def test_check_name_refuses_paths_and_odd_names(name, tmp_path) -> None:
    with pytest.raises(ConfigError, match="method key") as info:
        safe_child(tmp_path, name, what="method key")
    assert "\n" not in str(info.value) and repr(name)[:10] in str(info.value)


@pytest.mark.parametrize("name", ["non", "fo-sol", "zo-sol-stencil", "wake_quick", "ks.v2", "a+b", "_x", "9"])
def test_check_name_accepts_plain_names(name, tmp_path) -> None:
    assert check_name(name, what="x") == name
    assert safe_child(tmp_path, name, what="x", suffix=".h5") == tmp_path / f"{name}.h5"


def test_safe_child_refuses_a_planted_symlink(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    root = tmp_path / "out"
    root.mkdir()
    (root / "runs").symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link or leads outside"):
        safe_child(root, "runs", what="runs folder")
    with pytest.raises(ConfigError, match="symbolic link"):
        _run_dir(root, "non", None)
    (root / "runs").unlink()
    (root / "runs").mkdir()
    (root / "runs" / "non").symlink_to(victim)
    with pytest.raises(ConfigError, match="method key in \\[methods\\] 'non'"):
        _run_dir(root, "non", 0)


def test_run_dir_stays_inside_out(tmp_path) -> None:
    assert _run_dir(tmp_path, "zo-sol", None) == tmp_path / "runs" / "zo-sol"
    assert _run_dir(tmp_path, "zo-sol", 3) == tmp_path / "runs" / "zo-sol" / "seed3"
    for key in ("/tmp/victim", "../../victim"):
        with pytest.raises(ConfigError, match="method key"):
            _run_dir(tmp_path, key, None)


def test_symlinked_lock_is_refused_and_its_target_unchanged(tmp_path, toy_dataset, capsys) -> None:
    important = tmp_path / "important"
    important.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(important)
    with pytest.raises(ConfigError, match="symbolic link"), run_lock(run):
        pass
    argv = ["train", "--data", str(toy_dataset), "--out", str(run), "--method", "non", "--iterations", "1", "--quiet"]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "is a symbolic link; refusing to write through it" in err[0], err
    assert important.read_text() == "precious\n"
    assert (run / ".lock").is_symlink() and not (run / "config.json").exists()


def test_lock_that_is_not_a_regular_file_is_refused(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / ".lock")
    with pytest.raises(ConfigError, match="not a regular file"), run_lock(run):
        pass


def test_marker_only_in_folders_the_tool_created(tmp_path) -> None:
    mine = tmp_path / "mine"
    with run_lock(mine):
        pass
    assert is_tool_dir(mine) and (mine / MARKER).is_file()
    users = tmp_path / "users"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    with run_lock(users):  # an existing folder may be used, but it is not marked
        pass
    assert not is_tool_dir(users)
    with pytest.raises(ConfigError, match="--force refuses to delete"):
        remove_tool_dir(users)
    assert (users / "thesis.tex").read_text() == "years of work"
    remove_tool_dir(mine)
    assert not mine.exists()
    link = tmp_path / "link"
    link.symlink_to(make_tool_dir(tmp_path / "made"))
    with pytest.raises(ConfigError, match="did not create it"):
        remove_tool_dir(link)  # a link to a marked folder is not the folder
    assert (tmp_path / "made" / MARKER).is_file()


def _preset(tmp_path: Path, key: str) -> Path:
    small = RECIPE.replace("num_frames = 30", "num_frames = 6").replace("warmup_steps = 5", "warmup_steps = 0")
    (tmp_path / "toy.toml").write_text(small)
    p = tmp_path / "evil_preset.toml"
    p.write_text(
        'dataset = "toy.toml"\neval_steps = 2\n[model]\narch = "cnn"\nwidth = 4\nkernel_size = 3\n'
        f'[train]\nunroll = 2\niterations = 1\nbatch_size = 1\n[methods."{key}"]\nmethod = "non"\n'
    )
    return p


@pytest.mark.parametrize("key", ["/tmp/victim", "../../victim", "../../../../victim", "..", "runs/../../x"])
def test_preset_method_key_cannot_write_or_delete_outside_out(tmp_path, key, capsys, monkeypatch) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("keep me")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    preset = _preset(tmp_path, key.replace("/tmp/victim", str(victim)))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for force in ([], ["--force"]):
        assert main(["compare", "--preset", str(preset), "--out", "out", "--quiet", *force]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "method key in [methods]" in err[0], err
    assert (victim / "keep").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_recipe_name_cannot_escape_data(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "evil.toml").write_text(RECIPE.replace('name = "toy"', 'name = "../../../../tmp/x"'))
    with pytest.raises(ConfigError, match="name in \\[dataset\\]"):
        load_recipe(str(tmp_path / "evil.toml"))
    monkeypatch.chdir(tmp_path)
    assert main(["generate", str(tmp_path / "evil.toml"), "--quiet"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "'../../../../tmp/x' is a path" in err[0], err
    assert not (tmp_path / "data").exists()


def test_force_refuses_a_run_folder_the_tool_did_not_make(tmp_path, capsys) -> None:
    preset = _preset(tmp_path, "non")
    out = tmp_path / "out"
    planted = out / "runs" / "non"
    planted.mkdir(parents=True)
    (planted / "config.json").write_text(json.dumps({"hash": "not this one"}))
    (planted / "notes.txt").write_text("mine")
    assert main(["compare", "--preset", str(preset), "--out", str(out), "--quiet", "--force"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--force refuses to delete" in err[0], err
    assert (planted / "notes.txt").read_text() == "mine"


def test_force_still_retrains_a_run_the_tool_made(tmp_path, capsys) -> None:
    preset = _preset(tmp_path, "non")
    out = tmp_path / "out"
    assert main(["compare", "--preset", str(preset), "--out", str(out), "--quiet"]) == 0
    run = out / "runs" / "non"
    assert is_tool_dir(run)
    old = json.loads((run / "summary.json").read_text())["hash"]
    argv = ["compare", "--preset", str(preset), "--out", str(out), "--quiet", "--set", "train.seed=1"]
    assert main(argv) == 2 and "rerun with --force" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert json.loads((run / "summary.json").read_text())["hash"] != old and is_tool_dir(run)


def test_experiment_validates_method_keys_before_any_work(tmp_path) -> None:
    with pytest.raises(ConfigError, match="method key in \\[methods\\] '/tmp/victim' is an absolute path"):
        load_experiment(str(_preset(tmp_path, "/tmp/victim")))
