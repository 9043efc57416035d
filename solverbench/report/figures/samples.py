"""Sample grids: the samples a run saved, one panel per solver (rows) and NFE (columns).

Every panel shows the same sample indices (the same noise), so panels differ only by
solver and NFE.  Image-like samples ``(C, H, W)`` are tiled as images; 2-D samples are
scattered, colored by class label.  Other shapes get no sample figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from solverbench.report.figures.style import report_figure
from solverbench.report.tables.aggregate import block_order, nfe_block

IMAGES_PER_PANEL = 4  # a 2 x 2 mosaic


def sample_kind(shape: tuple[int, ...]) -> Optional[str]:
    """'image' for (C, H, W), 'points' for 2-D vectors, None for anything else."""
    if len(shape) == 3 and shape[1] > 1 and shape[2] > 1:
        return "image"
    if shape == (2,):
        return "points"
    return None


def load_panels(rows: pd.DataFrame, samples_dir: Path) -> dict[tuple[str, str], dict]:
    """(solver label, NFE block) -> the saved samples of its first finished seed."""
    panels = {}
    for _, row in rows[rows["status"] == "ok"].sort_values("seed").iterrows():
        key = (row["solver_label"], nfe_block(row["nfe"]))
        path = samples_dir / f"{row['cell_id']}.pt"
        if key not in panels and path.is_file():
            panels[key] = torch.load(path, weights_only=True)
    return panels


def _mosaic(images: torch.Tensor) -> np.ndarray:
    """Up to four images (N, C, H, W) as one (2H, 2W, 3 or 1) array in [0, 1]."""
    images = images[:IMAGES_PER_PANEL].double()
    if images.shape[1] in (1, 3):
        images = ((images + 1) / 2).clamp(0, 1)  # data in [-1, 1]
    else:  # latents: the first three channels, scaled to [0, 1] together
        images = images[:, :3]
        images = (images - images.min()) / (images.max() - images.min()).clamp_min(1e-12)
    n, c, h, w = images.shape
    gap = 1  # a white line between the images
    canvas = torch.ones(c, 2 * h + gap, 2 * w + gap, dtype=images.dtype)
    for i in range(n):
        top, left = (i // 2) * (h + gap), (i % 2) * (w + gap)
        canvas[:, top:top + h, left:left + w] = images[i]
    return canvas.permute(1, 2, 0).squeeze(-1).numpy()


def _limits(points: list[torch.Tensor]) -> tuple[tuple[float, float], tuple[float, float]]:
    every = torch.cat(points).double().numpy()
    lo, hi = np.percentile(every, 0.5, axis=0), np.percentile(every, 99.5, axis=0)
    pad = 0.08 * (hi - lo)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def why_no_figure(rows: pd.DataFrame, samples_dir: Path) -> str:
    """Why ``plot_samples`` drew nothing: no samples saved, or samples of a shape it does not draw."""
    for _, row in rows[rows["status"] == "ok"].iterrows():
        path = samples_dir / f"{row['cell_id']}.pt"
        if path.is_file():
            shape = tuple(torch.load(path, weights_only=True)["samples"].shape[1:])
            what = f"{shape[0]}-D vectors" if len(shape) == 1 else f"arrays of shape {shape}"
            return (f"the samples saved under {samples_dir} are {what}, not images (C, H, W) or 2-D points, "
                    "the shapes a sample figure draws")
    return f"the run saved no samples under {samples_dir} (the grid's save_samples)"


def plot_samples(rows: pd.DataFrame, samples_dir: Path, title: str, path: Path) -> Optional[Path]:
    """The sample grid of one setting; None when no samples were saved or they are not pictures."""
    panels = load_panels(rows, samples_dir)
    if not panels:
        return None
    kind = sample_kind(tuple(next(iter(panels.values()))["samples"].shape[1:]))
    if kind is None:
        return None
    labels = list(dict.fromkeys(k[0] for k in panels))
    blocks = sorted({k[1] for k in panels}, key=block_order)
    limits = _limits([p["samples"] for p in panels.values()]) if kind == "points" else None
    channels = next(iter(panels.values()))["samples"].shape[1] if kind == "image" else None
    label_width = 0.3 + 0.07 * max(len(label) for label in labels)  # inches of 9-pt row labels
    panel_height = 1.7  # inches, for a panel 1.7 wide: images are square, scatters keep the data's aspect
    if kind == "points":
        (x_lo, x_hi), (y_lo, y_hi) = limits
        panel_height = min(max(1.7 * (y_hi - y_lo) / (x_hi - x_lo), 0.6), 2.5)
    size = (1.7 * len(blocks) + label_width, (panel_height + 0.15) * len(labels) + 1.0)  # a gap between rows
    with report_figure(path, size=size, nrows=len(labels), ncols=len(blocks), constrained=True,
                       grid=True) as (fig, axes):
        for r, label in enumerate(labels):
            for c, block in enumerate(blocks):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                for spine in ax.spines.values():
                    spine.set_visible(kind == "points")
                panel = panels.get((label, block))
                if panel is None:
                    for spine in ax.spines.values():
                        spine.set_visible(False)
                elif kind == "image":
                    ax.imshow(_mosaic(panel["samples"]), cmap="gray" if channels == 1 else None,
                              interpolation="nearest")
                else:
                    _scatter(ax, panel, limits)
                if r == 0:
                    ax.set_title("adaptive" if block == "adaptive" else f"NFE {block}", fontsize=10)
                if c == 0:
                    ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        what = ("the first samples as 2 x 2 images" if kind == "image" else
                "x1 (horizontal) vs x2 (vertical), data units, colored by class")
        if kind == "image" and channels not in (1, 3):
            what += f" (latent channels 0-2 of {channels}, jointly scaled)"
        fig.suptitle(f"Samples by solver (rows) and NFE (columns): {what}\n{title}", fontsize=11)
        if kind == "points":
            _class_legend(fig, panels)
    return path


def _class_legend(fig, panels: dict) -> None:
    classes = sorted({int(y) for p in panels.values() if p.get("labels") is not None for y in p["labels"]})
    if not classes:
        return
    cmap = plt.get_cmap("tab10")
    handles = [plt.Line2D([], [], linestyle="none", marker="o", color=cmap(c % 10), label=f"class {c}")
               for c in classes]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), frameon=False)


def _scatter(ax, panel: dict, limits) -> None:
    points = panel["samples"].double().numpy()
    classes = panel.get("labels")
    colors = None if classes is None else plt.get_cmap("tab10")(classes.numpy() % 10)
    ax.scatter(points[:, 0], points[:, 1], s=5, c=colors, linewidths=0)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal", adjustable="box")
