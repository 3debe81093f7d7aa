"""The examples run as a user would run them: a fresh interpreter, from the repository root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_custom_adapter_example_runs_and_prints_the_maes(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its output folder lands in tmp_path
    proc = subprocess.run(
        [sys.executable, "examples/custom_adapter.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    maes = dict(re.findall(r"^test MAE (\S+)\s+(\d+\.\d+)$", proc.stdout, flags=re.MULTILINE))
    assert set(maes) == {"SRC", "NON", "ZO-SOL[identity]"}, proc.stdout
    assert all(0 < float(v) < 1 for v in maes.values()), proc.stdout
