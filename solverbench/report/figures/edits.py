"""Class edits as images: the sources in the top row, then each solver's edits of the same samples
(``source -> target`` above each column), 8x8 digits drawn large enough to see (nearest-neighbour)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
import torch

from solverbench.report.figures.style import report_figure

EDIT_FIGURE_NFE = (5, 10)  # the budgets the report draws edits at
COLUMNS = 8  # samples shown
INCHES = 1.1  # per image


def load_edits(rows: pd.DataFrame, edits_dir: Path, nfe: int) -> tuple[dict[str, dict], list[str]]:
    """solver label -> its saved edits at ``nfe`` (first finished seed), and the labels whose file is missing."""
    found, missing = {}, []
    at = rows[(rows["status"] == "ok") & (rows["nfe"] == nfe)].sort_values("seed")
    for label, group in at.groupby("solver_label", sort=False):
        path = next((edits_dir / f"{cid}.pt" for cid in group["cell_id"] if (edits_dir / f"{cid}.pt").is_file()), None)
        if path is None:
            missing.append(label)
        else:
            found[label] = torch.load(path, weights_only=True)
    return found, missing


def _image(x: torch.Tensor):
    """One sample (C, H, W) in [-1, 1] as what imshow takes: (H, W) grey or (H, W, 3) colour, in [0, 1]."""
    x = ((x.double() + 1) / 2).clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else x[:3].permute(1, 2, 0).numpy()


def plot_edits(rows: pd.DataFrame, edits_dir: Path, nfe: int, title: str, path: Path
               ) -> tuple[Optional[Path], list[str]]:
    """The edit grid at ``nfe`` (None where no solver saved edits there) and the solvers with no saved edits."""
    found, missing = load_edits(rows, edits_dir, nfe)
    if not found:
        return None, missing
    first = next(iter(found.values()))
    n = min(COLUMNS, len(first["source"]))
    labels = list(found)
    with report_figure(path, size=(INCHES * n + 2.6, INCHES * (len(labels) + 1) + 0.8), nrows=len(labels) + 1,
                       ncols=n, grid=True) as (fig, axes):
        for r, (name, images) in enumerate([("source", first["source"])] +
                                           [(label, found[label]["edited"]) for label in labels]):
            for c in range(n):
                ax = axes[r, c]
                ax.imshow(_image(images[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{int(first['source_labels'][c])} → {int(first['target_labels'][c])}", fontsize=11)
                if c == 0:
                    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9, wrap=True)
        fig.suptitle(f"Class edits at NFE {nfe}: sources (top) and each solver's edits\n{title}")
    return path, missing
