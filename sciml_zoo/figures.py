"""Comparison figures: error versus step with a band over seeds, and cost against accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from sciml_zoo.provenance import atomic_path  # noqa: E402

__all__ = ["plot_error_band", "plot_cost_accuracy"]


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


def plot_cost_accuracy(points: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    """Test MAE against training solver sample-steps and against wall-clock, one point per method and seed.

    Args:
        points: dicts with ``method``, ``mae``, ``train_solver_steps``, ``train_wall_s``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    methods = list(dict.fromkeys(p["method"] for p in points))
    for i, method in enumerate(methods):
        mine = [p for p in points if p["method"] == method]
        for ax, key in zip(axes, ("train_solver_steps", "train_wall_s"), strict=True):
            ax.scatter([p[key] for p in mine], [p["mae"] for p in mine], label=method, color=f"C{i}", s=24)
    axes[0].set_xlabel("training solver sample-steps")
    axes[1].set_xlabel("training wall-clock (s)")
    axes[0].set_ylabel("test MAE")
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title or "cost against accuracy (one point per method and seed)")
    _save(fig, path)
