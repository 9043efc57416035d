"""One look for every report figure: Agg backend, readable fonts, one color and marker per solver."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

DPI = 150
RC = {
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9.5,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.facecolor": "white",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
REFERENCE_GREY = "0.45"


class SolverStyles:
    """A fixed color and marker per solver label, the same in every figure of a report."""

    def __init__(self, labels: Iterable[str]):
        colors = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
        self._styles = {label: (colors[i % len(colors)], MARKERS[i % len(MARKERS)])
                        for i, label in enumerate(dict.fromkeys(labels))}

    def color(self, label: str):
        return self._styles[label][0]

    def marker(self, label: str) -> str:
        return self._styles[label][1]


@contextmanager
def report_figure(path: Path, *, size: tuple[float, float] = (8.0, 5.0), nrows: int = 1, ncols: int = 1,
                  constrained: bool = False) -> Iterator[tuple[plt.Figure, object]]:
    """A figure (and its axes, a 2-D array when nrows/ncols > 1) written to ``path`` as PNG on exit."""
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=nrows == ncols == 1,
                                 layout="constrained" if constrained else None)
        try:
            yield fig, axes
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
        finally:
            plt.close(fig)


def legend_outside(ax, **kwargs) -> None:
    """The legend to the right of the axes, so it never hides a line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **kwargs)
