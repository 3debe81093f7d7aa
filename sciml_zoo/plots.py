"""PNG plots: error versus step per method, and fields side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from sciml_zoo.provenance import atomic_path  # noqa: E402

__all__ = ["plot_error_vs_step", "plot_fields", "vorticity"]


def vorticity(state: torch.Tensor) -> torch.Tensor:
    """``dv/dx - du/dy`` of a 2-channel ``(2, H, W)`` state (grid units); a
    1-channel state is returned as its field."""
    if state.shape[0] == 1:
        return state[0]
    u, v = state[0], state[1]
    dv_dx = v[:, 1:] - v[:, :-1]
    du_dy = u[1:, :] - u[:-1, :]
    return dv_dx[:-1, :] - du_dy[:, :-1]


def plot_error_vs_step(per_step: xr.DataArray, path: str | Path, *, title: str = "") -> None:
    """Line plot of ``per_step`` (dims method, step)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in per_step["method"].values:
        ax.plot(per_step["step"], per_step.sel({"method": method}), label=str(method))
    ax.set_xlabel("step")
    ax.set_ylabel("MAE vs reference")
    ax.set_title(title or "test MAE per step")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_fields(fields: dict[str, torch.Tensor], path: str | Path, *, title: str = "") -> None:
    """Vorticity (or the scalar field) of several ``(C, H, W)`` states side by side."""
    maps = {k: vorticity(v) for k, v in fields.items()}
    lim = float(max(m.abs().max() for m in maps.values())) or 1.0
    fig, axes = plt.subplots(1, len(maps), figsize=(2.4 * len(maps), 4.2))
    for ax, (name, m) in zip(axes, maps.items(), strict=True):
        ax.imshow(m.numpy(), origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
