"""PNG plots: fields side by side and 1D space-time diagrams (error curves: :mod:`sciml_zoo.figures`).

Fields are per-sample states ``(C, *spatial)`` with 1 to 3 spatial axes: a 1D
state is drawn as lines, a 2D one as an image (the vorticity of a 2-channel
velocity, else channel 0), a 3D one as its middle ``z`` slice.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from sciml_zoo.provenance import atomic_path  # noqa: E402

__all__ = ["field_map", "field_name", "plot_fields", "plot_space_time", "vorticity"]


def vorticity(state: torch.Tensor) -> torch.Tensor:
    """``dv/dx - du/dy`` of a 2-channel ``(2, H, W)`` state (grid units); a
    1-channel state is returned as its field."""
    if state.shape[0] == 1:
        return state[0]
    u, v = state[0], state[1]
    dv_dx = v[:, 1:] - v[:, :-1]
    du_dy = u[1:, :] - u[:-1, :]
    return dv_dx[:-1, :] - du_dy[:, :-1]


def field_name(state: torch.Tensor) -> str:
    """What :func:`plot_fields` draws for a ``(C, *spatial)`` state, for titles."""
    spatial = state.dim() - 1
    if spatial == 2 and state.shape[0] == 2:
        return "vorticity"
    what = "field" if state.shape[0] == 1 else "channel 0"
    return f"{what}, middle z-slice" if spatial == 3 else what


def field_map(state: torch.Tensor) -> torch.Tensor:
    """The array drawn for a ``(C, *spatial)`` state: 1D ``(n,)`` or 2D ``(H, W)``."""
    spatial = state.dim() - 1
    if spatial == 1:
        return state[0]
    if spatial == 2:
        return vorticity(state)
    return state[0, state.shape[1] // 2]


def plot_fields(fields: dict[str, torch.Tensor], path: str | Path, *, title: str = "") -> None:
    """Several ``(C, *spatial)`` states side by side (see :func:`field_name` for what is drawn).

    1D states share one axes, one line each; 2D and 3D states get one image each.
    """
    maps = {k: field_map(v.detach().float().cpu()) for k, v in fields.items()}
    if next(iter(maps.values())).dim() == 1:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for name, m in maps.items():
            ax.plot(m.numpy(), label=name, lw=1.2)
        ax.set_xlabel("x (cells)")
        ax.set_ylabel(field_name(next(iter(fields.values()))))
        ax.legend(fontsize=8)
    else:
        lim = float(max(m.abs().max() for m in maps.values())) or 1.0
        fig, axes = plt.subplots(1, len(maps), figsize=(2.4 * len(maps), 4.2), squeeze=False)
        for ax, (name, m) in zip(axes[0], maps.items(), strict=True):
            ax.imshow(m.numpy(), origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_space_time(trajectories: dict[str, torch.Tensor], path: str | Path, *, title: str = "") -> None:
    """Space-time diagrams of 1D trajectories ``(T, C, n)`` (channel 0), time upwards, side by side."""
    maps = {k: v.detach().float().cpu()[:, 0] for k, v in trajectories.items()}
    lim = float(max(m.abs().max() for m in maps.values())) or 1.0
    fig, axes = plt.subplots(1, len(maps), figsize=(2.2 * len(maps), 4.2), squeeze=False)
    for ax, (name, m) in zip(axes[0], maps.items(), strict=True):
        ax.imshow(m.numpy(), origin="lower", aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x (cells)")
    axes[0][0].set_ylabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
