"""Comparison figures: error versus step with a band over seeds, and cost against accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from sciml_zoo.provenance import atomic_path  # noqa: E402

__all__ = ["plot_error_band", "plot_cost_accuracy", "record_points"]


def _save(fig: Any, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_error_band(per_step: xr.DataArray, path: str | Path, *, title: str = "") -> None:
    """Mean test MAE per step over seeds, with a min-max band when there are several seeds.

    Args:
        per_step: dims ``(seed, method, step)`` (MAE averaged over test simulations).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in per_step["method"].values:
        curve = per_step.sel({"method": method})
        mean = curve.mean("seed", skipna=True)
        (line,) = ax.plot(per_step["step"], mean, label=str(method))
        if per_step.sizes["seed"] > 1:
            ax.fill_between(
                per_step["step"], curve.min("seed"), curve.max("seed"), color=line.get_color(), alpha=0.2, lw=0
            )
    ax.set_xlabel("step")
    ax.set_ylabel("MAE vs reference")
    n = per_step.sizes["seed"]
    ax.set_title(title or "test MAE per step" + (f" (mean and range over {n} seeds)" if n > 1 else ""))
    ax.legend()
    _save(fig, path)


MARKERS = "osD^vP*Xhp<>"


def _style(i: int) -> dict[str, Any]:
    """Colour and marker of the ``i``-th method: 10 distinct hues (tab10), then their light variants,
    each with its own marker, so no two of the first 110 methods look alike."""
    color = plt.get_cmap("tab10")(i % 10) if i % 20 < 10 else plt.get_cmap("tab20")(2 * (i % 10) + 1)
    return {"color": color, "marker": MARKERS[i % len(MARKERS)]}


def plot_cost_accuracy(points: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    """Test MAE against training solver sample-steps and against wall-clock, per method and seed.

    Each method has its own colour and marker; its seeds are the small faint
    points, its mean ± std over seeds (in both cost and MAE) the large point
    with bars. The legend sits outside the axes, so it never hides data.

    Args:
        points: dicts with ``method``, ``mae``, ``train_solver_steps``, ``train_wall_s``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    methods = list(dict.fromkeys(p["method"] for p in points))
    for i, method in enumerate(methods):
        mine = [p for p in points if p["method"] == method]
        style = _style(i)
        mae = np.array([p["mae"] for p in mine], dtype=float)
        for ax, key in zip(axes, ("train_solver_steps", "train_wall_s"), strict=True):
            cost = np.array([p[key] for p in mine], dtype=float)
            ax.scatter(cost, mae, s=14, alpha=0.35, color=style["color"], marker=style["marker"], lw=0)
            spread = {"xerr": cost.std(), "yerr": mae.std()} if len(mine) > 1 else {}
            label = f"{method} ({len(mine)} seeds)" if len(mine) > 1 else method
            ax.errorbar(
                cost.mean(),
                mae.mean(),
                **spread,
                fmt=style["marker"],
                color=style["color"],
                ms=7,
                capsize=3,
                label=label if ax is axes[1] else None,
            )
    axes[0].set_xlabel("training solver sample-steps")
    axes[1].set_xlabel("training wall-clock (s)")
    axes[0].set_ylabel("test MAE")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle(title or "cost against accuracy: seeds (faint) and mean ± std over seeds")
    _save(fig, path)


def record_points(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The trained methods' per-seed points of a committed record (SRC has no training cost)."""
    points = []
    for label, runs in record.get("train", {}).items():
        maes = record["mae"].get(label, [])
        for run, mae in zip(runs, maes, strict=False):
            if mae is not None and run.get("train_solver_steps") is not None:
                points.append(
                    {"method": label, "mae": mae, **{k: run[k] for k in ("train_solver_steps", "train_wall_s")}}
                )
    return points
