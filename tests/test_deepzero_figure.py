"""benchmarks/deepzero_figure.py: published bars beside a compare results.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "deepzero_figure.py"
spec = importlib.util.spec_from_file_location("deepzero_figure", SCRIPT)
assert spec is not None and spec.loader is not None
fig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fig)


def _record(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"preset": "paper", "eval_steps": [499, 100], "seeds": [0, 1, 2], "rows": rows}))
    return path


def _row(method: str, mae: float, seed_std: float = 0.01) -> dict:
    return {"method": method, "mae": mae, "seed_std": seed_std, "mae_std": 0.5, "seeds": 3}


def test_published_gap_share_is_deepzeros_43_percent() -> None:
    non, zo, fo = (fig.PUBLISHED[k][0] for k in ("NON", "ZO-SOL", "FO-SOL"))
    assert fig.gap_closed(non, zo, fo) == pytest.approx(0.43, abs=0.01)


def test_summary_divides_by_fo_sol_and_uses_the_seed_spread(tmp_path: Path) -> None:
    path = _record(tmp_path, [_row("SRC", 0.2), _row("NON", 0.16), _row("FO-SOL", 0.08), _row("ZO-SOL[auto]", 0.12)])
    rows, _ = fig.load_rows(path)
    lines = fig.summarise(rows)
    zo = next(line for line in lines if line.startswith("ZO-SOL[auto]"))
    assert "0.1200 ± 0.0100" in zo and "/ FO-SOL 1.50" in zo and "gap closed 50%" in zo
    assert "published 0.180 ± 0.022" in lines[0]


def test_draws_the_figure_and_refuses_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _record(tmp_path, [_row("SRC", 0.2), _row("NON", 0.16), _row("FO-SOL", 0.08)])
    assert fig.main([str(path), "--out", str(tmp_path / "f.png")]) == 0
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert fig.main([str(tmp_path / "nope.json")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_a_table_without_fo_sol_or_not_from_compare_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert fig.main([str(_record(tmp_path, [_row("SRC", 0.2), _row("NON", 0.16)]))]) == 2
    assert "no FO-SOL row" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert fig.main([str(bad)]) == 2
    assert "is not a compare results.json" in capsys.readouterr().err
