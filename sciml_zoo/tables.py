"""Comparison tables: per-seed MAE aggregated into mean ± std, a 95% interval and ratios to FO-SOL.

Pure functions on the errors of :func:`~sciml_zoo.evaluate.evaluate_methods`
and the runs' summaries; ``compare`` and ``evaluate`` print the same table.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from sciml_zoo.estimators.base import merge_stats

__all__ = [
    "comparison_rows",
    "format_paired",
    "format_table",
    "paired_difference",
    "paired_rows",
    "seed_summary",
    "sign_test_p",
    "t_quantile_975",
    "FAULT_NAMES",
    "PAIRED_BASELINES",
]

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
# the free baselines: no solver queries beyond the rollout; only methods that use solver gradients face them
_FREE = ("ZO-SOL[stop-gradient]", "ZO-SOL[identity]")
PAIRED_BASELINES = ("FO-SOL", "NON", *_FREE)
FAULT_NAMES = ("failures", "retries", "timeouts", "restarts", "dropped_members", "skipped_iterations", "fallbacks")


def t_quantile_975(df: int) -> float:
    """Student t 97.5% quantile (two-sided 95% interval) for ``df`` degrees of freedom."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    return 1.96 + 2.4 / df  # within 0.2% of the exact quantile for df > 15


def seed_summary(values: list[float]) -> dict[str, float]:
    """Mean, sample std and 95% Student-t half-width of per-seed values (NaNs dropped)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": math.nan, "n": 0}
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {
        "mean": float(v.mean()),
        "std": std,
        "ci95": t_quantile_975(len(v) - 1) * std / math.sqrt(len(v)),
        "n": len(v),
    }


def comparison_rows(
    errors: xr.DataArray, labels: list[str], summaries: dict[str, list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """Table rows from per-step errors ``(seed, method, sim, step)`` (or without ``seed``) and run summaries.

    Per seed, a method's MAE is its mean over simulations and steps; rows give
    the mean over seeds, the std over seeds, a 95% interval, the std over
    simulations (mean over seeds) and the per-seed ratio to ``FO-SOL``
    (mean ± std of the ratios).
    """
    if "seed" not in errors.dims:
        errors = errors.expand_dims(seed=[0])
    summaries = summaries or {}
    per_seed = errors.mean(("sim", "step"))  # (seed, method)
    sim_std = errors.mean("step").std("sim").mean("seed")
    fo = per_seed.sel({"method": "FO-SOL"}) if "FO-SOL" in labels else None
    rows = []
    for label in labels:
        maes = per_seed.sel({"method": label}).values.tolist()
        stats = seed_summary(maes)
        ratios = None if fo is None else seed_summary((per_seed.sel({"method": label}) / fo).values.tolist())
        runs = summaries.get(label, [])
        steps = [s["train_solver_steps"] for s in runs if s.get("train_solver_steps") is not None]
        walls = [s["train_wall_s"] for s in runs if s.get("train_wall_s") is not None]
        faults: dict[str, Any] = {}
        for s in runs:  # counts add up over seeds, gauges (band radius, residual) keep the largest
            merge_stats(faults, s.get("faults") or {})
        rows.append(
            {
                "method": label,
                "mae": stats["mean"],
                "mae_std": float(sim_std.sel({"method": label})),
                "seeds": stats["n"],
                "seed_std": stats["std"],
                "ci95": stats["ci95"],
                "per_seed": maes,
                "ratio_to_fo": None if ratios is None else ratios["mean"],
                "ratio_std": None if ratios is None else ratios["std"],
                "train_solver_steps": float(np.mean(steps)) if steps else None,
                "train_wall_s": float(np.mean(walls)) if walls else None,
                "faults": faults,
            }
        )
    return rows


def _faults_text(faults: dict[str, float]) -> str:
    parts = [f"{k.replace('_', ' ')} {v:g}" for k, v in faults.items() if v and k in FAULT_NAMES]
    return ", ".join(parts) or "-"


def format_table(rows: list[dict[str, Any]], failed: dict[str, str] | None = None) -> str:
    """Markdown table of comparison rows; failed or skipped methods as rows with their reason."""
    multi = any(r.get("seeds", 1) > 1 for r in rows)
    if multi:
        n = max(r["seeds"] for r in rows)
        head = f"| method | test MAE (mean ± std, {n} seeds) | 95% CI | / FO-SOL (per seed) | "
    else:
        head = "| method | test MAE | ± (std over sims) | / FO-SOL | "
    head += "train solver steps | train wall-clock (s) | faults |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["ratio_to_fo"] is None:
            ratio = "n/a"
        elif multi:
            ratio = f"{r['ratio_to_fo']:.2f} ± {r['ratio_std']:.2f}"
        else:
            ratio = f"{r['ratio_to_fo']:.2f}"
        steps = "-" if r["train_solver_steps"] is None else f"{r['train_solver_steps']:,.0f}"
        wall = "-" if r["train_wall_s"] is None else f"{r['train_wall_s']:.0f}"
        faults = _faults_text(r.get("faults") or {})
        if multi:
            lines.append(
                f"| {r['method']} | {r['mae']:.4f} ± {r['seed_std']:.4f} | ± {r['ci95']:.4f} | {ratio} | {steps} "
                f"| {wall} | {faults} |"
            )
        else:
            lines.append(
                f"| {r['method']} | {r['mae']:.4f} | {r['mae_std']:.4f} | {ratio} | {steps} | {wall} | {faults} |"
            )
    for label, reason in (failed or {}).items():
        lines.append(f"| {label} | {reason} | | | | | |")
    return "\n".join(lines)


def sign_test_p(wins: int, n: int) -> float:
    """Exact two-sided sign-test p-value of ``wins`` out of ``n`` paired seeds under a fair coin.

    With 3 seeds the smallest possible value is 0.25 and with 5 seeds 0.0625:
    "better at every seed" is evidence only from about 6 seeds on (p = 0.031).
    """
    if n < 1:
        return math.nan
    k = min(wins, n - wins)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def paired_rows(
    errors: xr.DataArray, labels: list[str], baselines: tuple[str, ...] = PAIRED_BASELINES
) -> list[dict[str, Any]]:
    """Every method against each baseline present, paired by seed.

    Every method faces FO-SOL and NON; the methods that use solver gradients
    (FO-SOL and every other ZO-SOL estimator) also face the free baselines,
    stop-gradient and identity, since beating those is what the solver
    queries are for.

    Per seed, the difference of test MAEs ``method - baseline`` (negative:
    the method is better). Runs of one seed share the data and the seed of
    every random draw, so their difference is the fair unit; differences at
    different seeds are independent. The difference counts as beyond noise
    when its 95% Student-t interval over seeds excludes zero; the sign test
    over seeds is reported beside it.
    Needs at least two seeds (errors ``(seed, method, sim, step)``).
    """
    if "seed" not in errors.dims or errors.sizes["seed"] < 2:
        return []
    per_seed = errors.mean(("sim", "step"))
    rows = []
    for base in (b for b in baselines if b in labels):
        ref = per_seed.sel({"method": base})
        for label in labels:
            if label == base or (base in _FREE and not _uses_gradients(label)):
                continue
            diff = np.asarray((per_seed.sel({"method": label}) - ref).values, dtype=float)
            rows.append({"method": label, "baseline": base, **paired_difference(diff[np.isfinite(diff)].tolist())})
    return rows


def paired_difference(diff: list[float]) -> dict[str, Any]:
    """Summary of per-seed differences ``method - baseline`` (negative: better) and its verdict.

    Beyond noise (``better``/``worse``) when the 95% Student-t interval over
    seeds excludes zero; ``one seed`` gives no verdict. Keys: ``diff``,
    ``diff_std``, ``ci95``, ``per_seed``, ``wins``, ``seeds``, ``sign_p``, ``verdict``.
    """
    stats = seed_summary(diff)
    wins = sum(d < 0 for d in diff)
    low, high = stats["mean"] - stats["ci95"], stats["mean"] + stats["ci95"]
    verdict = "better" if high < 0 else "worse" if low > 0 else "within noise"
    return {
        "diff": stats["mean"],
        "diff_std": stats["std"],
        "ci95": stats["ci95"],
        "per_seed": list(diff),
        "wins": wins,
        "seeds": len(diff),
        "sign_p": sign_test_p(wins, len(diff)),
        "verdict": verdict if len(diff) > 1 else "one seed",
    }


def _uses_gradients(label: str) -> bool:
    return label == "FO-SOL" or (label.startswith("ZO-SOL[") and label not in _FREE)


def format_paired(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`paired_rows` (empty string when there are none)."""
    if not rows:
        return ""
    lines = [
        "Paired by seed (method - baseline; negative = better; beyond noise when the 95% CI excludes 0):",
        "",
        "| method | against | difference (mean ± std) | 95% CI | better at | sign test p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['baseline']} | {r['diff']:+.4f} ± {r['diff_std']:.4f} | ± {r['ci95']:.4f} "
            f"| {r['wins']} of {r['seeds']} | {r['sign_p']:.3g} | {r['verdict']} |"
        )
    return "\n".join(lines)
