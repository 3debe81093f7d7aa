"""compare --jobs: runs trained in worker processes give the same bits, name failures, refuse bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sciml_zoo import registry
from sciml_zoo.cli import main
from sciml_zoo.compare import run_comparison
from sciml_zoo.errors import ConfigError
from sciml_zoo.experiment import load_experiment
from sciml_zoo.train.pool import train_in_pool

ASSETS = Path(__file__).parent / "assets"
PRESET = str(ASSETS / "toy_preset.toml")
FAST = ["train.iterations=6", "train.checkpoint_every=3", "eval_steps=[5, 8]"]
LONGER = ["train.iterations=120", "train.checkpoint_every=5", "eval_steps=[5, 8]"]


def _per_seed(record: dict) -> dict[str, list[float]]:
    return {r["method"]: r["per_seed"] for r in record["rows"] if r["method"] != "SRC"}


def test_two_jobs_give_the_same_results_as_one(tmp_path):
    exp = load_experiment(PRESET, overrides=FAST, seeds=2)
    one = run_comparison(exp, tmp_path / "one", progress=False, shared_data=None)
    two = run_comparison(exp, tmp_path / "two", progress=False, shared_data=None, jobs=2)
    assert _per_seed(one) == _per_seed(two) and len(_per_seed(two)["FO-SOL"]) == 2
    for run in ("non/seed0", "fo-sol/seed1"):  # the same trained weights, bit for bit
        a, b = (json.loads((tmp_path / d / "runs" / run / "summary.json").read_text()) for d in ("one", "two"))
        assert a["hash"] == b["hash"] and a["final_loss"] == b["final_loss"]
    # finished runs are reused, not retrained, also by the pool
    again = run_comparison(exp, tmp_path / "two", progress=False, shared_data=None, jobs=2)
    assert _per_seed(again) == _per_seed(two)


def test_a_run_failing_in_a_worker_is_named_and_the_others_are_tabled(tmp_path):
    overrides = [*FAST, "methods.fo-sol.lr=1e30", "methods.fo-sol.optimizer=SGD", "methods.fo-sol.method=non"]
    overrides += ["methods.fo-sol.checkpoint_every=1"]
    exp = load_experiment(PRESET, overrides=overrides)
    record = run_comparison(exp, tmp_path, progress=False, shared_data=None, jobs=2)
    assert [r["method"] for r in record["rows"]] == ["SRC", "NON (non)"]
    assert "diverged" in record["failed"]["NON (fo-sol)"]


def test_a_solver_registered_here_that_cannot_reach_workers_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_RUNTIME", {"local-only": lambda: None})
    with pytest.raises(ConfigError, match="'local-only' was registered.*--jobs 1"):
        train_in_pool([], tmp_path / "x.h5", solver="local-only", jobs=2)
    assert train_in_pool([], tmp_path / "x.h5", solver="other", jobs=2) == {}  # not needed: not sent


def test_bad_jobs_is_one_line(tmp_path, capsys):
    exp = load_experiment(PRESET, overrides=FAST, only=["non"])
    with pytest.raises(ConfigError, match="jobs must be a positive int, got 0; e.g. --jobs 2"):
        run_comparison(exp, tmp_path, progress=False, jobs=0)
    assert main(["compare", "--preset", PRESET, "--jobs", "two", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sciml-zoo compare: error: --jobs must be a positive integer, got 'two'; e.g. --jobs 2"]


def test_sigterm_stops_the_workers_and_a_rerun_resumes_to_the_same_numbers(tmp_path):
    args = ["compare", "--preset", PRESET, "--seeds", "2", "--jobs", "2", "--quiet", "--out", "cmp"]
    args += [f"--set={o}" for o in LONGER]
    cmd = [sys.executable, "-c", "import sys; from sciml_zoo.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "cmp" / "runs"
    deadline = time.monotonic() + 120
    while len(list(runs.glob("*/seed*/checkpoint.pt"))) < 2 and time.monotonic() < deadline:  # both training
        time.sleep(0.2)
    assert proc.poll() is None, "the comparison ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert len(list(runs.glob("*/seed*/summary.json"))) < 4  # stopped before the end
    assert len(list(runs.glob("*/seed*/checkpoint.pt"))) >= 2  # the workers saved where they were
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True).returncode == 0  # resumes and finishes
    exp = load_experiment(PRESET, overrides=LONGER, seeds=2)
    whole = run_comparison(exp, tmp_path / "whole", progress=False, shared_data=None)
    resumed = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert _per_seed(resumed) == _per_seed(whole)


def test_a_script_without_a_main_guard_gets_one_line_not_a_broken_pool(tmp_path):
    """Spawned workers import the script again; unguarded, each worker reruns the comparison and dies."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from sciml_zoo.compare import run_comparison\n"
        "from sciml_zoo.experiment import load_experiment\n"
        f"exp = load_experiment({PRESET!r}, overrides={FAST!r}, seeds=2)\n"
        "run_comparison(exp, 'out', progress=False, shared_data=None, jobs=2)\n"
    )
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]  # the script's own uncaught error: its last line says what to do
    assert done.returncode == 1 and "a worker process of --jobs 2 died" in last, done.stderr
    assert "if __name__ == '__main__':" in last and "BrokenProcessPool" not in last
