"""Result records: a compare output reduces to a record that regenerates its table, and the docs are the records.

The fixtures ``tests/assets/ks_tiny_results_{3seeds,1seed}.json`` are the
``results.json`` of real runs of ``sciml-zoo compare --preset ks_tiny
[--seeds 3]``; the slow test makes a fresh one.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sciml_zoo.cli import main
from sciml_zoo.errors import ConfigError
from sciml_zoo.experiment import load_experiment
from sciml_zoo.provenance import to_jsonable
from sciml_zoo.records import FORMAT, read_record, read_records, reduce_results
from sciml_zoo.report_cli import preset_command
from sciml_zoo.results_page import fill_headlines, record_table, render_page

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"


def _results(name: str) -> dict:
    return json.loads((ASSETS / f"ks_tiny_results_{name}.json").read_text())


@pytest.mark.parametrize("name", ["3seeds", "1seed"])
def test_a_record_regenerates_the_table_compare_printed(name):
    results = _results(name)
    record = reduce_results(results, command="sciml-zoo compare --preset ks_tiny")
    assert record["format"] == FORMAT
    assert record["methods"] == [r["method"] for r in results["rows"]]
    assert record_table(record) == results["table"]  # every digit, the paired table too
    n = len(results["seeds"] or [None])
    assert all(len(v) == n for v in record["mae"].values())
    assert sum(len(v) for v in record["train"].values()) == len(results["runs"])
    assert record["dataset"]["hash"] == results["dataset"]["hash"]
    assert record["versions"] == results["versions"]


def test_the_command_is_derived_only_when_a_built_in_preset_gives_exactly_the_config():
    results = _results("3seeds")
    results["config"] = json.loads(json.dumps(to_jsonable(load_experiment("ks_tiny", seeds=3))))
    assert preset_command(results) == "sciml-zoo compare --preset ks_tiny --seeds 3"
    changed = copy.deepcopy(results)
    changed["config"]["methods"]["non"]["iterations"] += 1  # an override the command would not show
    assert preset_command(changed) is None
    assert preset_command({**results, "preset": "../ks_tiny"}) is None  # never a path from the file


def test_report_cli_writes_a_record_and_a_page_and_checks_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results.json").write_text((ASSETS / "ks_tiny_results_3seeds.json").read_text())
    (tmp_path / "recs").mkdir()
    (tmp_path / "README.md").write_text("intro\n<!-- headline: recs/tiny.json -->\nold\n<!-- /headline -->\nend\n")
    cmd = ["report", "--record", "results.json", "--out", "recs/tiny.json", "--command", "sciml-zoo compare x"]
    assert main(cmd) == 0
    record = read_record(tmp_path / "recs" / "tiny.json")
    assert record["command"] == "sciml-zoo compare x"
    render = ["report", "recs", "--out", "page.md", "--readme", "README.md"]
    assert main(render) == 0
    page, readme = (tmp_path / "page.md").read_text(), (tmp_path / "README.md").read_text()
    assert record_table(record) in page and "sciml-zoo report recs/ --out page.md`" in page
    assert record_table(record, paired=False) in readme and "old" not in readme
    assert readme.startswith("intro\n") and readme.endswith("<!-- /headline -->\nend\n")
    assert main([*render, "--check"]) == 0
    (tmp_path / "page.md").write_text(page.replace("0.1273", "0.1272"))  # a hand-typed number
    assert main([*render, "--check"]) == 1
    assert "differs" in capsys.readouterr().out


def test_a_results_json_without_a_derivable_command_is_refused_with_one_line(tmp_path, capsys):
    results = _results("3seeds")
    results["config"]["methods"]["non"]["lr"] = 0.5
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert main(["report", "--record", str(tmp_path / "r.json"), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--command" in err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(format="other"),
        lambda r: r["methods"].append("NEW"),
        lambda r: r["mae"]["NON"].pop(),
        lambda r: r["mae"]["NON"].__setitem__(0, "0.1"),
        lambda r: r.update(title="a | b"),
        lambda r: r.update(command="x\n```\nrm -rf /"),
        lambda r: r.update(seeds=[0, 0, 1]),
        lambda r: r["train"]["NON"][0].update(train_wall_s="fast"),
    ],
)
def test_a_malformed_record_is_refused_naming_the_key(tmp_path, change):
    record = reduce_results(_results("3seeds"), command="sciml-zoo compare --preset ks_tiny --seeds 3")
    change(record)
    (tmp_path / "bad.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="bad.json"):
        read_records(tmp_path)


def test_records_are_strict_json_and_symlinks_are_not_followed(tmp_path):
    record = reduce_results(_results("3seeds"), command="sciml-zoo compare --preset ks_tiny --seeds 3")
    text = json.dumps(record)
    (tmp_path / "nan.json").write_text(text.replace('"wall_clock_s": ', '"wall_clock_s": NaN, "x": ', 1))
    with pytest.raises(ConfigError, match="NaN"):
        read_records(tmp_path)
    (tmp_path / "nan.json").unlink()
    (tmp_path / "elsewhere.json").symlink_to(ASSETS / "ks_tiny_results_3seeds.json")
    assert read_records(tmp_path) == {}


def test_page_and_headline_are_deterministic_and_a_missing_record_leaves_a_placeholder():
    record = reduce_results(_results("3seeds"), command="sciml-zoo compare --preset ks_tiny --seeds 3")
    records = {"b.json": record, "a.json": copy.deepcopy(record)}
    page = render_page(
        records, records_link="results", records_dir="docs/results", command="sciml-zoo report docs/results/ --out x.md"
    )
    assert page == render_page(
        dict(records),
        records_link="results",
        records_dir="docs/results",
        command="sciml-zoo report docs/results/ --out x.md",
    )
    assert page.index("[`a.json`]") < page.index("[`b.json`]")
    readme = "<!-- headline: docs/results/missing.json -->\n<!-- /headline -->\n"
    filled = fill_headlines(readme, records, page_link="docs/results.md")
    assert "Placeholder" in filled and fill_headlines(filled, records, page_link="docs/results.md") == filled


def test_docs_results_page_and_readme_headline_are_what_the_committed_records_give(monkeypatch):
    """A number in docs/results.md or the README headline is the number in a committed record."""
    monkeypatch.chdir(ROOT)
    status = main(["report", "docs/results/", "--out", "docs/results.md", "--readme", "README.md", "--check"])
    assert status == 0, (
        "docs/results.md or README.md differs from the records; run "
        "`sciml-zoo report docs/results/ --out docs/results.md --readme README.md`"
    )


@pytest.mark.slow
def test_a_fresh_tiny_comparison_reduces_to_a_record_that_regenerates_its_table(tmp_path):
    exe = [sys.executable, "-m", "sciml_zoo.cli"]
    run = subprocess.run(
        [*exe, "compare", "--preset", "ks_tiny", "--seeds", "3", "--out", "out", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    red = subprocess.run(
        [*exe, "report", "--record", "out/results.json", "--out", "rec/ks_tiny.json"], cwd=tmp_path, text=True
    )
    assert red.returncode == 0
    record = read_record(tmp_path / "rec" / "ks_tiny.json")
    assert record["command"] == "sciml-zoo compare --preset ks_tiny --seeds 3"
    assert record_table(record) == json.loads((tmp_path / "out" / "results.json").read_text())["table"]


def test_every_record_gets_its_figure_and_methods_never_share_a_look(tmp_path, monkeypatch):
    from sciml_zoo.figures import _style, plot_cost_accuracy, record_points

    monkeypatch.chdir(ROOT)
    looks = {(tuple(_style(i)["color"]), _style(i)["marker"]) for i in range(40)}
    assert len(looks) == 40  # NON and DeepZero's row no longer share one blue
    record = read_record(Path("docs/results/quick.json"))
    points = record_points(record)
    assert {p["method"] for p in points} == set(record["train"]) and len(points) == 3 * len(record["train"])
    plot_cost_accuracy(points, tmp_path / "q.png", title="t")
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"
    page = Path("docs/results.md").read_text(encoding="utf-8")
    for name in read_records(Path("docs/results")):
        figure = Path("docs/figures/records") / f"{Path(name).stem}.png"
        assert figure.is_file() and f"(figures/records/{figure.name})" in page
