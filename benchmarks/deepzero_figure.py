"""DeepZero's published wake-flow bars beside ours: MAE and ratio to FO-SOL.

Reads the ``results.json`` that ``sciml-zoo compare`` wrote (any preset; the
table it answers to is the ``paper`` preset's, whose MAE is over the whole
499-step test runs as DeepZero's is) and draws two panels: test MAE per method
(mean ± std over seeds, or over test simulations for one seed; published mean ± std as printed on DeepZero's slide,
ICLR 2024) and each method's MAE divided by FO-SOL's. Prints the same numbers,
the share of the NON -> FO-SOL gap each ZO-SOL row closes (published: 43%), and
the horizon, seeds and preset they come from.

    python benchmarks/deepzero_figure.py results/paper/results.json --out docs/figures/deepzero.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# DeepZero (Chen et al., ICLR 2024), wake flow, MAE over the test simulations (slide bar chart).
PUBLISHED = {"SRC": (0.180, 0.022), "NON": (0.153, 0.041), "ZO-SOL": (0.119, 0.038), "FO-SOL": (0.074, 0.034)}


def gap_closed(non: float, zo: float, fo: float) -> float:
    """Share of the NON -> FO-SOL gap that a ZO-SOL MAE closes (1 = matches FO-SOL)."""
    return (non - zo) / (non - fo)


def load_rows(path: Path) -> tuple[dict[str, dict], dict]:
    """Rows of a compare ``results.json`` by method label, and the record itself."""
    try:
        record = json.loads(path.read_text())
        rows = {r["method"]: r for r in record["rows"] if r.get("mae") is not None}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"results: {str(path)!r} is not a compare results.json ({exc!r}); give the one compare wrote"
        ) from exc
    if "FO-SOL" not in rows:
        raise ValueError(f"results: {str(path)!r} has no FO-SOL row to divide by; run compare with the fo-sol method")
    return rows, record


def spread(row: dict) -> float:
    """Std over seeds when there are several, else std over test simulations."""
    return float(row.get("seed_std") if row.get("seeds", 1) > 1 else row.get("mae_std") or 0.0)


def summarise(rows: dict[str, dict]) -> list[str]:
    """One line per method: ours (mean ± std, ratio to FO-SOL, gap closed) and the published one."""
    fo, non = rows["FO-SOL"]["mae"], rows.get("NON", {}).get("mae")
    lines = []
    for label, r in rows.items():
        ours = f"{r['mae']:.4f} ± {spread(r):.4f}"
        line = f"{label:<28} ours {ours:<18} / FO-SOL {r['mae'] / fo:.2f}"
        if label.startswith("ZO-SOL") and non is not None and non != fo:
            line += f"  NON->FO gap closed {100 * gap_closed(non, r['mae'], fo):.0f}%"
        base = "ZO-SOL" if label.startswith("ZO-SOL[sparse") else label
        if base in PUBLISHED:
            m, s = PUBLISHED[base]
            line += f"  | published {m:.3f} ± {s:.3f} (/ FO-SOL {m / PUBLISHED['FO-SOL'][0]:.2f})"
        lines.append(line)
    m = PUBLISHED
    closed = gap_closed(m["NON"][0], m["ZO-SOL"][0], m["FO-SOL"][0])
    lines.append(
        f"published ZO-SOL (sparse CGE): / FO-SOL {m['ZO-SOL'][0] / m['FO-SOL'][0]:.2f}, gap closed {closed:.0%}"
    )
    return lines


def draw(rows: dict[str, dict], record: dict, out: Path) -> None:
    """Two panels, published bars (grey) beside ours (blue), one group per method."""
    # DeepZero's ZO-SOL is sparse CGE: its published bar gets a group even when we have no such row
    if not any(k.startswith("ZO-SOL[sparse") for k in rows):
        rows = {**rows, "ZO-SOL[sparse-cge]": {"mae": float("nan")}}
    labels = list(rows)
    fo = rows["FO-SOL"]["mae"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = range(len(labels))
    ours = [rows[k]["mae"] for k in labels]
    ours_err = [spread(rows[k]) for k in labels]
    pub = [PUBLISHED.get("ZO-SOL" if k.startswith("ZO-SOL[sparse") else k, (float("nan"), 0.0)) for k in labels]
    width = 0.4
    axes[0].bar(
        [i - width / 2 for i in x],
        [p[0] for p in pub],
        width,
        yerr=[p[1] for p in pub],
        color="0.7",
        label="DeepZero (published)",
    )
    axes[0].bar([i + width / 2 for i in x], ours, width, yerr=ours_err, color="tab:blue", label="sciml-zoo (ours)")
    axes[0].set_ylabel("test MAE")
    axes[1].bar([i - width / 2 for i in x], [p[0] / PUBLISHED["FO-SOL"][0] for p in pub], width, color="0.7")
    axes[1].bar([i + width / 2 for i in x], [m / fo for m in ours], width, color="tab:blue")
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set_ylabel("MAE / FO-SOL")
    for ax in axes:
        ax.set_xticks(list(x), labels, rotation=30, ha="right", fontsize=8)
    seeds = record.get("seeds") or [record.get("seed")]
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{record.get('preset')}: {record.get('eval_steps')} test steps, seeds {seeds}", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.json written by `sciml-zoo compare`")
    parser.add_argument("--out", type=Path, default=Path("deepzero_comparison.png"), help="figure path [%(default)s]")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        print(
            f"results: {str(args.results)!r} is not a file; give the results.json that compare wrote", file=sys.stderr
        )
        return 2
    try:
        rows, record = load_rows(args.results)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("\n".join(summarise(rows)))
    draw(rows, record, args.out)
    print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
