"""The pairwise figure of one setting: per ranked metric (rows of panels) and NFE block (columns), a solver x
solver heatmap of the standardized paired difference (``PairwiseBlock.advantage``).

A cell's color is how many paired standard errors the row is better than the column (blue: the row is
better, red: worse, clipped at ``CLIP``), its number that value (0 where the two agree sample by
sample); grey where the two cannot be paired, and on the diagonal.
One scale for every metric and both kinds of pairing: beyond about 2 a single comparison is
significant at 95% (a table's bold marks also correct for the block's other comparisons).  Solvers are
numbered once for the whole figure; the key is under the panels.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional

import numpy as np
from matplotlib.colors import Normalize

from solverbench.report.figures.style import report_figure
from solverbench.report.tables.pairwise_blocks import PairwiseBlock
from solverbench.report.tables.aggregate import block_order

CLIP = 5.0  # paired standard errors at which the colors saturate
INCHES_PER_SOLVER = 0.32
COLORS = "RdBu"
NOT_PAIRED = "0.85"


def plot_pairwise(blocks: list[PairwiseBlock], title: str, path: Path) -> Optional[Path]:
    """The figure of a setting's pairwise blocks at ``path``; None without a block."""
    if not blocks:
        return None
    metrics = list(dict.fromkeys(b.metric for b in blocks))
    nfe = sorted(dict.fromkeys(b.block for b in blocks), key=block_order)
    numbers = {label: i + 1 for i, label in enumerate(dict.fromkeys(l for b in blocks for l in b.labels))}
    side = max(3.0, INCHES_PER_SOLVER * max(len(b.labels) for b in blocks))
    size = (side * len(nfe) + 1.2, side * len(metrics) + 0.8)
    with report_figure(path, size=size, nrows=len(metrics), ncols=len(nfe), constrained=True, grid=True) \
            as (fig, axes):
        image = None
        for r, metric in enumerate(metrics):
            for c, block in enumerate(nfe):
                ax = axes[r, c]
                found = [b for b in blocks if b.metric == metric and b.block == block]
                if not found:
                    ax.set_axis_off()
                    continue
                image = _panel(ax, found[0], numbers)
        fig.colorbar(image, ax=axes, shrink=0.6, label=f"row better than column (paired standard errors, clipped "
                                                        f"at ±{CLIP:g})")
        fig.suptitle(f"Pairwise paired comparisons\n{title}")
        key = "   ".join(f"({n}) {label}" for label, n in numbers.items())
        fig.text(0.0, 0.0, textwrap.fill(key, width=int(14 * size[0])), ha="left", va="top", fontsize=8)
    return path


def _panel(ax, block: PairwiseBlock, numbers: dict[str, int]):
    n = len(block.labels)
    z = np.array([[np.nan if block.advantage(i, j) is None else block.advantage(i, j) for j in range(n)]
                  for i in range(n)])
    ax.set_facecolor(NOT_PAIRED)
    image = ax.imshow(np.ma.masked_invalid(np.clip(z, -2 * CLIP, 2 * CLIP)), cmap=COLORS, norm=Normalize(-CLIP, CLIP))
    ticks = [str(numbers[label]) for label in block.labels]
    ax.set_xticks(range(n), ticks, fontsize=7)
    ax.set_yticks(range(n), ticks, fontsize=7)
    ax.grid(False)
    fontsize = 8 if n <= 10 else 5.5
    for i in range(n):
        for j in range(n):
            if i != j and not np.isnan(z[i, j]):
                ax.text(j, i, _number(z[i, j]), ha="center", va="center", fontsize=fontsize,
                        color="white" if abs(z[i, j]) > 0.6 * CLIP else "black")
    ax.set_title(f"{block.metric.label}, NFE {block.block}", fontsize=10)
    ax.set_xlabel("column", fontsize=8)
    ax.set_ylabel("row", fontsize=8)
    return image


def _number(z: float) -> str:
    if np.isinf(z):
        return "∞" if z > 0 else "-∞"
    return f"{z:.0f}" if abs(z) >= 9.5 else f"{z:.1f}"
