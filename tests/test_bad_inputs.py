"""Every bad input is one line naming the value, the key and the fix, exit 2 (issue 11 item 4, issue 21 item 7).

Table-driven, in-process (``main([...])``): each row is a command line with
``{placeholders}`` for the shared files and a phrase its one error line must hold.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import pytest

from sciml_zoo import registry
from sciml_zoo.cli import main
from sciml_zoo_solvers.toy_diffusion import ToyDiffusion

ASSETS = Path(__file__).parent / "assets"


def _unwritable(root: Path) -> Path:
    """A folder no file can be written in, for root too (CI may run as root)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/sys/sciml-zoo-unwritable")  # sysfs refuses new entries, even to root
    ro = root / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, toy_dataset: Path, toy_recipe) -> dict[str, str]:
    from sciml_zoo.data.generate import generate_dataset

    root = tmp_path_factory.mktemp("bad")
    other = generate_dataset(replace(toy_recipe, name="toy4", source_resolution=(4, 4)), root / "toy4.h5")
    run = root / "run"
    assert (
        main(["train", "--data", str(toy_dataset), "--out", str(run), "--method", "non"] + ["--iterations", "1"]) == 0
    )
    no_recipe = root / "no_recipe.h5"
    shutil.copy(toy_dataset, no_recipe)
    with h5py.File(no_recipe, "r+") as f:
        del f.attrs["recipe"]
    (root / "a_file").write_text("not a folder")
    (root / "corrupt.h5").write_bytes(b"\x89HDF\r\n" + b"garbage" * 50)
    bad_summary = root / "bad_summary"
    shutil.copytree(run, bad_summary)
    (bad_summary / "summary.json").write_text("{not json")
    (root / "folder").mkdir()
    (root / "exists.nc").write_text("keep")
    files = _bad_files(root)
    return {
        **files,
        "bad_summary": str(bad_summary),
        "folder": str(root / "folder"),
        "exists": str(root / "exists.nc"),
        "data": str(toy_dataset),
        "other": str(other),
        "run": str(run),
        "no_recipe": str(no_recipe),
        "ro": str(_unwritable(root)),
        "file": str(root / "a_file"),
        "corrupt": str(root / "corrupt.h5"),
        "missing": str(root / "missing.h5"),
        "out": str(root / "out"),
        "toy_recipe": str(ASSETS / "toy.toml"),
        "preset": str(ASSETS / "toy_preset.toml"),
    }


RECIPE = (ASSETS / "toy.toml").read_text()
PRESET = (
    (ASSETS / "toy_preset.toml").read_text().replace('dataset = "toy.toml"', f"dataset = {str(ASSETS / 'toy.toml')!r}")
)

# recipe files: (placeholder, text); each is one bad input of `generate` (or of `compare`, for presets)
BAD_RECIPES = {
    "r_dt": RECIPE.replace("dt = 0.002", 'dt = "abc"'),
    "r_solver5": RECIPE.replace('solver = "toy-diffusion"', "solver = 5"),
    "r_grid": RECIPE.replace("reference_resolution = [16, 16]", "reference_resolution = [12, 12]"),
    "r_grid_late": RECIPE.replace("reference_resolution = [16, 16]", "reference_resolution = [12, 12]").replace(
        "warmup_steps = 5", "warmup_steps = 100000000"
    ),
    "r_up": RECIPE.replace('name = "toy"', 'name = "../../../../tmp/x"'),
    "r_abs": RECIPE.replace('name = "toy"', 'name = "/tmp/x"'),
    "r_frames": RECIPE.replace("num_frames = 30", "num_frames = 1"),
    "r_noparams": RECIPE.replace("train_params = [[0.002], [0.006], [0.010]]", "train_params = []"),
    "r_width": RECIPE.replace("test_params = [[0.004], [0.008]]", "test_params = [[0.004, 1.0]]"),
    "r_coarse": RECIPE.replace("reference_resolution = [16, 16]", "reference_resolution = [4, 4]"),
    "r_dims": RECIPE.replace("reference_resolution = [16, 16]", "reference_resolution = [16, 16, 16]"),
    "r_key": RECIPE.replace("seed = 0", "seed = 0\ncolour = 1"),
    "r_table": "name = 'toy'\n",
    "r_toml": RECIPE + "\n[[[ broken",
    "r_unknown": RECIPE.replace('solver = "toy-diffusion"', 'solver = "nope"'),
    "r_option": RECIPE.replace("dt = 0.002", "dt = 0.002\nbogus = 1"),
    "r_code": RECIPE.replace('solver = "toy-diffusion"', 'solver = "os:system"'),
    "r_warmup": RECIPE.replace("warmup_steps = 5", "warmup_steps = -1"),
    "p_empty": PRESET.split("[methods.non]")[0] + "[methods]\n",
    "p_none": PRESET.split("[methods.non]")[0],
    "p_abs": PRESET + '[methods."/tmp/victim"]\nmethod = "non"\n',
    "p_up": PRESET + '[methods."../../victim"]\nmethod = "non"\n',
    "p_five": 'dataset = "toy.toml"\n[methods]\nx = 5\n',
    "p_key": "colour = 1\n" + PRESET,
    "p_eval0": PRESET.replace("eval_steps = 20", "eval_steps = 0"),
    "p_seeds": "seeds = [0, 0]\n" + PRESET,
    "p_seeds_str": 'seeds = "abc"\n' + PRESET,
    "p_dataset5": PRESET.replace(f"dataset = {str(ASSETS / 'toy.toml')!r}", "dataset = 5"),
    "p_train5": 'dataset = "toy.toml"\ntrain = 5\n[methods.non]\nmethod = "non"\n',
    "p_norecipe": PRESET.replace(f"dataset = {str(ASSETS / 'toy.toml')!r}", 'dataset = "missing_recipe.toml"'),
}


def _bad_files(root: Path) -> dict[str, str]:
    out = {}
    for key, text in BAD_RECIPES.items():
        (root / f"{key}.toml").write_text(text)
        out[key] = str(root / f"{key}.toml")
    shutil.copy(ASSETS / "toy.toml", root / "toy.toml")
    return out


TRAIN = "train --data {data} --out {out} --method non --quiet"
CASES = [
    ("batch_size 1.5", TRAIN + " --set train.batch_size=1.5", "train.batch_size must be an integer, got 1.5"),
    ("iterations 10.0", TRAIN + " --iterations 10.0", "train.iterations must be an integer, got 10.0"),
    ("seed abc", TRAIN + " --seed abc", "train.seed must be an integer, got 'abc'"),
    ("lr abc", TRAIN + " --lr abc", "train.lr must be a number, got 'abc'"),
    ("estimator_options 5", TRAIN + " --method zo-sol --set train.estimator_options=5", "train.estimator_options"),
    ("estimator option", TRAIN + " --method zo-sol --estimator stencil --set train.estimator_options.nope=1", "nope"),
    ("unknown method", TRAIN + " --method xx", "train.method must be one of non, fo-sol, zo-sol; got 'xx'"),
    ("unknown estimator", TRAIN + " --method zo-sol --estimator nope", "unknown estimator 'nope'"),
    ("negative unroll", TRAIN + " --unroll -2", "train.unroll must be >= 1, got -2"),
    ("batch_size 0", TRAIN + " --batch-size 0", "train.batch_size must be >= 1, got 0"),
    ("unknown key", TRAIN + " --set train.learning_rate=1", "'learning_rate'"),
    ("override without =", TRAIN + " --set train.lr", "must look like section.key=value"),
    ("bad padding", TRAIN + " --set model.padding=mirror", "model.padding must be one of"),
    ("bad optimizer", TRAIN + " --optimizer Adamm", "train.optimizer 'Adamm'"),
    ("bad device", TRAIN + " --device tpu", "'tpu' is not a torch device"),
    ("timeout -1", TRAIN + " --timeout -1", "train.timeout_s must be > 0, got -1"),
    ("resume nothing", TRAIN + " --resume", "not found; train first"),
    ("missing flag", "train --data {data}", "required: --out"),
    ("dataset without recipe: train", "train --data {no_recipe} --out {out} --method non", "has no 'recipe' attribute"),
    ("dataset without recipe: evaluate", "evaluate --data {no_recipe}", "has no 'recipe' attribute"),
    ("missing dataset", "evaluate --data {missing}", "not found; generate it"),
    ("corrupt dataset", "train --data {corrupt} --out {out} --method non", "is corrupt or not HDF5"),
    ("run of another dataset: evaluate", "evaluate --data {other} {run} --steps 2", "does not fit dataset"),
    ("run of another dataset: diagnose", "diagnose --data {other} --run {run} --estimators identity", "does not fit"),
    ("missing run", "evaluate --data {data} {missing} --steps 2", "not found; train first"),
    ("steps 0", "evaluate --data {data} --steps 0", "--steps must be a positive integer, got '0'"),
    ("steps -3", "evaluate --data {data} --steps -3", "--steps must be a positive integer, got '-3'"),
    ("steps past the data", "evaluate --data {data} --steps 99", "use --steps 29 or fewer"),
    ("evaluate bad device", "evaluate --data {data} --steps 2 --device tpu", "--device 'tpu' is not a torch device"),
    ("read-only train --out", "train --data {data} --out {ro}/r --method non", "cannot write run directory"),
    ("read-only generate --out", "generate {toy_recipe} --out {ro}/x.h5 --quiet", "is not writable"),
    ("read-only evaluate --out", "evaluate --data {data} --steps 2 --out {ro}/e.nc", "cannot write --out"),
    ("train --out under a file", "train --data {data} --out {file}/r --method non", "cannot write run directory"),
    ("generate --out under a file", "generate {toy_recipe} --out {file}/x.h5 --quiet", "is a file, not a folder"),
    ("evaluate --out under a file", "evaluate --data {data} --steps 2 --out {file}/e.nc", "cannot write --out"),
    ("unknown preset", "compare --preset nope", "preset 'nope' not found; available presets:"),
    ("unknown recipe", "generate nope", "dataset recipe 'nope' not found; built-in recipes:"),
    ("missing recipe file", "generate ./nope.toml", "dataset recipe file './nope.toml' not found"),
    ("seeds 0", "compare --preset {preset} --seeds 0", "--seeds must be a positive integer, got '0'"),
    ("compare bad device", "compare --preset {preset} --device tpu", "--device 'tpu' is not a torch device"),
    ("diagnose unknown estimator", "diagnose --data {data} --estimators nope", "unknown estimator 'nope'"),
    ("diagnose unroll past the data", "diagnose --data {data} --estimators identity --unroll 30", "--unroll 29 or"),
    ("diagnose batch 0", "diagnose --data {data} --batch-size 0", "--batch-size must be a positive integer"),
    ("diagnose repeats 0", "diagnose --data {data} --repeats 0", "--repeats must be a positive integer"),
    ("diagnose seed abc", "diagnose --data {data} --seed abc", "--seed must be an integer, got 'abc'"),
    ("diagnose option format", "diagnose --data {data} --estimator-option kernel_size=3", "use NAME.KEY=VALUE"),
    ("diagnose missing run", "diagnose --data {data} --run {missing} --estimators identity", "not found"),
    ("diagnose negative unroll", "diagnose --data {data} --unroll -1", "--unroll must be a positive integer"),
    (
        "diagnose bad option",
        "diagnose --data {data} --estimators stencil --estimator-option stencil.kernel_size=abc",
        "kernel_size='abc' is invalid",
    ),
    ("solver option without =", "evaluate --data {data} --solver-option novalue", "must look like"),
    ("unknown solver option", "evaluate --data {data} --steps 2 --solver-option bogus=1", "bad options for solver"),
    ("unknown solver", "evaluate --data {data} --steps 2 --solver nope", "unknown solver 'nope'"),
]

NOT_HERE = "cuda:7"  # a device this machine lacks (no CUDA, or fewer than 8 GPUs)
CASES += [  # issue 21 finding 13 and more: every one a single line and exit 2, before any work
    # train: counts and ranges
    ("iterations 0", TRAIN + " --iterations 0", "train.iterations must be >= 1, got 0"),
    ("iterations -5", TRAIN + " --iterations -5", "train.iterations must be >= 1, got -5"),
    ("iterations abc", TRAIN + " --iterations abc", "train.iterations must be an integer, got 'abc'"),
    ("batch_size abc", TRAIN + " --batch-size abc", "train.batch_size must be an integer"),
    ("workers 1.5", TRAIN + " --workers 1.5", "train.workers must be an integer, got 1.5"),
    ("workers -1", TRAIN + " --workers -1", "train.workers must be >= 0, got -1"),
    ("retries -1", TRAIN + " --retries -1", "train.retries must be >= 0, got -1"),
    ("retries abc", TRAIN + " --retries abc", "train.retries must be an integer, got 'abc'"),
    ("timeout 0", TRAIN + " --timeout 0", "train.timeout_s must be > 0, got 0"),
    ("timeout abc", TRAIN + " --timeout abc", "train.timeout_s must be a number, got 'abc'"),
    ("lr 0", TRAIN + " --lr 0", "train.lr must be > 0, got 0"),
    ("lr -1", TRAIN + " --lr -1", "train.lr must be > 0, got -1"),
    ("checkpoint_every 0", TRAIN + " --set train.checkpoint_every=0", "train.checkpoint_every must be >= 1"),
    ("max_consecutive_failures 0", TRAIN + " --set train.max_consecutive_failures=0", "must be >= 1, got 0"),
    ("grad_clip -1", TRAIN + " --set train.grad_clip=-1", "train.grad_clip must be > 0, got -1"),
    ("grad_clip abc", TRAIN + " --set train.grad_clip=abc", "train.grad_clip must be a number, got 'abc'"),
    ("curriculum maybe", TRAIN + " --set train.curriculum=maybe", "train.curriculum must be true or false"),
    ("executor gpu", TRAIN + " --executor gpu", "train.executor must be one of"),
    ("process without workers", TRAIN + " --executor process", 'train.executor = "process" needs train.workers'),
    ("scheduler address without dask", TRAIN + " --scheduler tcp://x:1", 'needs train.executor = "dask"'),
    ("estimator with non", TRAIN + " --estimator stencil", "train.estimator is only used with method zo-sol"),
    # finding 12: the unroll (the curriculum's last stage) against the 30-frame trajectories
    ("unroll 100000", TRAIN + " --method fo-sol --unroll 100000 --iterations 2", "at least 100001 frames"),
    ("curriculum to 32", TRAIN + " --method fo-sol --unroll 32 --iterations 50", "(the curriculum's last stage)"),
    ("unroll 30 zo-sol", TRAIN + " --method zo-sol --unroll 30 --set train.curriculum=false", "--unroll 29 or"),
    # devices this machine has
    ("train device absent", TRAIN + f" --device {NOT_HERE}", f"--device '{NOT_HERE}'"),
    ("train device meta", TRAIN + " --device meta", "device type 'meta' is not supported"),
    ("train device via --set", TRAIN + f" --set train.device={NOT_HERE}", f"train.device '{NOT_HERE}'"),
    ("evaluate device absent", "evaluate --data {data} --steps 2 --device " + NOT_HERE, f"--device '{NOT_HERE}'"),
    ("compare device absent", "compare --preset {preset} --device " + NOT_HERE, f"--device '{NOT_HERE}'"),
    ("compare method device", "compare --preset {preset} --set methods.non.device=" + NOT_HERE, "methods.non.device"),
    # optimizer and scheduler options against torch's signatures
    (
        "momentum abc",
        TRAIN + " --optimizer SGD --set train.optimizer_options.momentum=abc",
        "momentum must be a number",
    ),
    ("nesterov 1", TRAIN + " --optimizer SGD --set train.optimizer_options.nesterov=1", "must be true or false"),
    ("betas one", TRAIN + " --set train.optimizer_options.betas=[0.9]", "betas must be a list of 2 numbers"),
    ("optimizer option typo", TRAIN + " --set train.optimizer_options.momentun=0.9", "is not an option of Adam"),
    ("optimizer option lr", TRAIN + " --set train.optimizer_options.lr=1", "set train.lr (--lr) instead"),
    ("optimizer options 5", TRAIN + " --set train.optimizer_options=5", "train.optimizer_options must be a table"),
    ("scheduler unknown", TRAIN + " --set train.scheduler=Nope", "is not in torch.optim.lr_scheduler"),
    ("scheduler needs T_max", TRAIN + " --set train.scheduler=CosineAnnealingLR", "must set T_max"),
    ("scheduler options alone", TRAIN + " --set train.scheduler_options.T_max=3", "train.scheduler is not"),
    (
        "scheduler gamma abc",
        TRAIN + " --set train.scheduler=StepLR --set train.scheduler_options.step_size=2"
        " --set train.scheduler_options.gamma=abc",
        "train.scheduler_options.gamma must be a number, got 'abc'",
    ),
    # model
    ("width 0", TRAIN + " --set model.width=0", "model.width must be an integer >= 1, got 0"),
    ("kernel abc", TRAIN + " --set model.kernel_size=abc", "model.kernel_size must be an integer >= 1, got 'abc'"),
    ("even kernel", TRAIN + " --set model.kernel_size=4", "model.kernel_size must be odd"),
    ("depth 0", TRAIN + " --set model.depth=0", "model.depth must be an integer >= 1, got 0"),
    ("zero_mean 1", TRAIN + " --set model.zero_mean=1", "model.zero_mean must be true or false"),
    ("arch unknown", TRAIN + " --set model.arch=transformer", "model.arch must be one of"),
    ("activation unknown", TRAIN + " --set model.activation=swish", "model.activation must be one of"),
    # run configs and run directories
    ("unknown table", TRAIN + " --set foo.bar=1", "unknown table(s) ['foo']"),
    ("train not a table", TRAIN + " --set train=5", "train must be a table"),
    ("missing config file", TRAIN + " --config {missing}.toml", "not found"),
    ("config not TOML", TRAIN + " --config {r_toml}", "is not valid TOML"),
    ("no dataset", "train --out {out} --method non", "no dataset given"),
    ("run exists", "train --data {data} --out {run} --method non --iterations 1", "already holds a run"),
    (
        "resume other config",
        "train --data {data} --out {run} --method non --iterations 1 --lr 0.5 --resume",
        "a different config",
    ),
    # recipes (generate): finding 13's dt = "abc", solver = 5, grids that do not divide, --out a folder
    ("recipe dt abc", "generate {r_dt} --out {out}.h5 --quiet", "dt='abc' must be a number"),
    ("recipe solver 5", "generate {r_solver5} --out {out}.h5 --quiet", "solver must be a registered solver name"),
    ("recipe grids do not divide", "generate {r_grid} --out {out}.h5 --quiet", "cannot restrict a grid of (12, 12)"),
    ("grids checked before the warmup", "generate {r_grid_late} --out {out}.h5 --quiet", "cannot restrict a grid"),
    ("recipe name ..", "generate {r_up} --quiet", "'../../../../tmp/x' is a path"),
    ("recipe name absolute", "generate {r_abs} --quiet", "'/tmp/x' is an absolute path"),
    ("recipe num_frames 1", "generate {r_frames} --out {out}.h5 --quiet", "num_frames must be >= 2"),
    ("recipe no train params", "generate {r_noparams} --out {out}.h5 --quiet", "train_params is empty"),
    ("recipe param width", "generate {r_width} --out {out}.h5 --quiet", "has 2 value(s)"),
    ("recipe reference coarser", "generate {r_coarse} --out {out}.h5 --quiet", "must be at least as fine"),
    ("recipe axes differ", "generate {r_dims} --out {out}.h5 --quiet", "must list the same number"),
    ("recipe unknown key", "generate {r_key} --out {out}.h5 --quiet", "unknown key(s) 'colour'"),
    ("recipe without [dataset]", "generate {r_table} --out {out}.h5 --quiet", "has no [dataset] table"),
    ("recipe not TOML", "generate {r_toml} --out {out}.h5 --quiet", "is not valid TOML"),
    ("recipe unknown solver", "generate {r_unknown} --out {out}.h5 --quiet", "unknown solver 'nope'"),
    ("recipe unknown solver option", "generate {r_option} --out {out}.h5 --quiet", "bad options for solver"),
    ("recipe names code", "generate {r_code} --out {out}.h5 --quiet", "which imports code"),
    ("recipe warmup -1", "generate {r_warmup} --out {out}.h5 --quiet", "warmup_steps must be >= 0"),
    ("generate --out a folder", "generate {toy_recipe} --out {folder} --quiet", "is a folder"),
    ("preset given as recipe", "generate {preset} --quiet", "has no [dataset] table"),
    # presets (compare): a recipe as a preset, an empty [methods], names that are paths
    ("recipe given as preset", "compare --preset {toy_recipe}", "it is a dataset recipe, not a preset"),
    ("empty [methods]", "compare --preset {p_empty}", "has an empty [methods] table"),
    ("no [methods]", "compare --preset {p_none}", "has no [methods] table"),
    ("method key absolute", "compare --preset {p_abs} --force", "'/tmp/victim' is an absolute path"),
    ("method key ..", "compare --preset {p_up}", "'../../victim' is a path"),
    ("method not a table", "compare --preset {p_five}", "methods.x in preset"),
    ("preset unknown key", "compare --preset {p_key}", "unknown key(s) ['colour']"),
    ("preset eval_steps 0", "compare --preset {p_eval0}", "eval_steps must be a positive integer"),
    ("preset repeated seed", "compare --preset {p_seeds}", "repeat a seed"),
    ("preset seeds not a list", "compare --preset {p_seeds_str}", "seeds must be a list of integers"),
    ("preset dataset 5", "compare --preset {p_dataset5}", "must be a recipe name or .toml path, got 5"),
    ("preset train 5", "compare --preset {p_train5}", "must be a table ([train])"),
    ("preset recipe missing", "compare --preset {p_norecipe}", "'missing_recipe.toml' not found"),
    ("compare unknown method", "compare --preset {preset} --methods nope", "unknown method(s) ['nope']"),
    ("compare seeds abc", "compare --preset {preset} --seeds abc", "--seeds must be a positive integer"),
    ("compare unroll past the data", "compare --preset {preset} --set train.unroll=40", "methods.fo-sol.unroll=29"),
    # evaluate: --out checked before evaluating
    ("evaluate --out exists", "evaluate --data {data} --steps 2 --out {exists}", "already exists; pass --overwrite"),
    ("evaluate --out a folder", "evaluate --data {data} --steps 2 --out {folder}", "it is a folder"),
    ("evaluate steps abc", "evaluate --data {data} --steps abc", "--steps must be a positive integer, got 'abc'"),
    ("evaluate device meta", "evaluate --data {data} --steps 2 --device meta", "device type 'meta'"),
    ("evaluate corrupt summary", "evaluate --data {data} {bad_summary} --steps 2", "summary.json' is corrupt"),
    # the command line itself
    ("threads 0", "--threads 0 solvers", "--threads: must be a positive integer, got '0'"),
    ("threads -1", "--threads -1 solvers", "--threads: must be a positive integer, got '-1'"),
    ("threads abc", "--threads abc solvers", "--threads: must be a positive integer, got 'abc'"),
    ("no command", "", "required: command"),
    ("unknown command", "fly", "invalid choice: 'fly'"),
    ("unknown flag", TRAIN + " --fast", "unrecognized arguments: --fast"),
]


@pytest.mark.parametrize(("argv", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(paths, argv: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    try:
        code = main(argv.format(**paths).split())
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert needle in err[0], err


class _Float64(ToyDiffusion):
    name = "f64-toy"

    def step(self, state, params):
        return super().step(state, params).double()


@pytest.mark.parametrize("method", ["non", "fo-sol", "zo-sol"])
def test_float64_adapter_is_named_at_the_step_boundary(paths, method, monkeypatch, capsys) -> None:
    monkeypatch.setitem(registry._RUNTIME, "toy-diffusion", lambda **kw: _Float64(**kw))
    argv = ["train", "--data", paths["data"], "--out", paths["out"] + method, "--method", method, "--quiet"]
    assert main([*argv, "--iterations", "1"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "f64-toy.step returned dtype torch.float64 for a torch.float32 state" in err[0], err


def test_compare_with_a_failed_method_prints_the_others_and_exits_2(tmp_path, capsys) -> None:
    preset = str(ASSETS / "toy_preset.toml")
    sets = ["train.iterations=4", "eval_steps=5", "methods.fo-sol.lr=1e30", "methods.fo-sol.optimizer=SGD"]
    sets += ["methods.fo-sol.method=non", "methods.fo-sol.checkpoint_every=1"]
    argv = ["compare", "--preset", preset, "--out", str(tmp_path / "c"), "--quiet"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 2
    out, err = capsys.readouterr()
    assert "| NON (non) |" in out and "| NON (fo-sol) | failed: " in out
    assert "1 method(s) failed: NON (fo-sol)" in err.splitlines()[-1]
