"""Paired differences between two rows of committed records (``docs/results/*.json``), seed by seed.

Usage:
    python benchmarks/paired_records.py NEW.json "ROW" OLD.json "ROW" [NEW.json "ROW" OLD.json "ROW" ...]

For rows trained at the same seeds on the same dataset (both records name it
by content hash, checked here), prints per seed ``new - old`` test MAE, their
mean ± std, the 95% Student-t half-width and the verdict (``better`` /
``worse`` when the interval excludes 0, else ``within noise``), with the sign
count. Records of different runs cannot share a run folder when an option's
default changed (a run's hash covers its whole config), so such a
comparison lives in two records; this reads them, nothing else.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sciml_zoo.tables import paired_difference


def _row(path: str, label: str) -> tuple[dict[int, float], str]:
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    if label not in record["mae"]:
        raise SystemExit(f"error: {path} has no row {label!r}; its rows: {', '.join(record['mae'])}")
    return dict(zip(record["seeds"], record["mae"][label], strict=True)), record["dataset"]["hash"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="NEW.json ROW OLD.json ROW, repeated")
    args = parser.parse_args()
    if len(args.pairs) % 4:
        raise SystemExit("error: give NEW.json ROW OLD.json ROW, four arguments per comparison")
    for i in range(0, len(args.pairs), 4):
        new_path, new_label, old_path, old_label = args.pairs[i : i + 4]
        (new, new_data), (old, old_data) = _row(new_path, new_label), _row(old_path, old_label)
        if new_data != old_data:
            raise SystemExit(f"error: {new_path} and {old_path} used different datasets ({new_data}, {old_data})")
        seeds = sorted(set(new) & set(old))
        d = paired_difference([new[s] - old[s] for s in seeds])
        print(f"{Path(new_path).stem}: {new_label} vs {old_label} ({Path(old_path).stem}), seeds {seeds}")
        print(f"  new {[round(new[s], 4) for s in seeds]}  old {[round(old[s], 4) for s in seeds]}")
        print(
            f"  difference {d['diff']:+.4f} ± {d['diff_std']:.4f} (95% CI ± {d['ci95']:.4f}): {d['verdict']}, "
            f"new better at {d['wins']} of {d['seeds']}"
        )


if __name__ == "__main__":
    main()
