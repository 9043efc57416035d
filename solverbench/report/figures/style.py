"""One look for every report figure: Agg backend, readable fonts, one color, marker and line style per solver."""
from __future__ import annotations

import math
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import (FixedLocator, FuncFormatter, Locator, LogLocator, MaxNLocator,  # noqa: E402
                               NullFormatter)

DPI = 150
RC = {
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9.5,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.facecolor": "white",
}
# Twenty colors a reader can tell apart on white, none of them grey (grey is for reference
# lines): tab10 without its grey, then colors picked one at a time as far (CIELAB) from
# those before as a dark-enough color can be.  The later ones are closer to earlier ones,
# so they come with another line style (``LINE_STYLES``).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#000075", "#f032e6", "#a6761d", "#637939", "#f0027f", "#1b9e77", "#000000", "#fc8d62", "#e7969c",
    "#911eb4", "#393b79",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
# Every LINES_PER_STYLE labels the line style changes; '--' is kept for analysis-only solvers.
LINE_STYLES = ("-", "-.", (0, (1, 1)), (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))
LINES_PER_STYLE = 10
REFERENCE_GREY = "0.45"
ANALYSIS_LINE_STYLE = "--"


class SolverStyles:
    """A fixed (color, marker, line style) per solver label, the same in every figure of a report.

    Labels get the colors of ``PALETTE`` in order, so up to 20 labels have 20 different
    colors; markers and line styles cycle with other periods, so no two labels share all three.
    """

    def __init__(self, labels: Iterable[str]):
        self._styles = {label: style(i) for i, label in enumerate(dict.fromkeys(labels))}

    def color(self, label: str):
        return self._styles[label][0]

    def marker(self, label: str) -> str:
        return self._styles[label][1]

    def linestyle(self, label: str):
        return self._styles[label][2]


def style(i: int) -> tuple[str, str, object]:
    """The (color, marker, line style) of the i-th label."""
    n_colors, n_markers = len(PALETTE), len(MARKERS)
    cycle = n_colors * n_markers // math.gcd(n_colors, n_markers)  # (color, marker) pairs repeat after this
    return (PALETTE[i % n_colors], MARKERS[i % n_markers],
            LINE_STYLES[(i // LINES_PER_STYLE + i // cycle) % len(LINE_STYLES)])


@contextmanager
def report_figure(path: Path, *, size: tuple[float, float] = (8.0, 5.0), nrows: int = 1, ncols: int = 1,
                  constrained: bool = False, grid: bool = False) -> Iterator[tuple[plt.Figure, object]]:
    """A figure and its axes, written to ``path`` as PNG on exit.

    The axes: one ``Axes`` for a 1 x 1 figure, else a 2-D array (rows x columns); with
    ``grid`` always the 2-D array, so ``axes[r, c]`` works for a 1 x 1 grid too.
    """
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False,
                                 layout="constrained" if constrained else None)
        try:
            yield fig, (axes if grid or nrows * ncols > 1 else axes[0, 0])
            readable_log_axes(fig)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
        finally:
            plt.close(fig)


def legend_below(fig, handles: Sequence, labels: Sequence[str], wrap: int = 46) -> int:
    """The legend under the axes (constrained layout), labels longer than ``wrap`` characters
    wrapped, in as many columns as the figure's width holds; returns about how many text
    lines high it is (to size the figure)."""
    if not handles:
        return 0
    labels = [textwrap.fill(label, wrap, break_long_words=False, subsequent_indent="  ") for label in labels]
    fontsize = plt.rcParams["legend.fontsize"]
    fontsize = fontsize if isinstance(fontsize, (int, float)) else 9.5
    inches_per_char = 0.55 * fontsize / 72  # an average character of a sans-serif font
    widest = max(len(line) for label in labels for line in label.splitlines())
    entry = 0.8 + inches_per_char * widest  # handle, gaps and text
    ncol = max(1, min(len(labels), int(fig.get_figwidth() // entry), 4))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False,
               columnspacing=1.4, handlelength=2.6)
    return -(-sum(label.count("\n") + 1 for label in labels) // ncol) + 1


def value_ticks(axis, values: Iterable[float], min_gap: float = 1 / 16) -> None:
    """Ticks on ``axis`` (``ax.xaxis``) at ``values`` only, labelled as plain numbers (5, 7, 10, 15).

    A value closer to the last labelled one than ``min_gap`` of the values' range (in log
    units on a log axis) keeps its tick but no label, so labels never overlap; minor ticks
    stay unlabelled.
    """
    values = sorted({float(v) for v in values})
    if not values:
        return
    log = axis.get_scale() == "log"
    position = (lambda v: math.log(v)) if log else (lambda v: v)
    span = position(values[-1]) - position(values[0]) or 1.0
    labelled, last = set(), None
    for v in values:
        if last is None or position(v) - position(last) >= min_gap * span:
            labelled.add(_key(v))
            last = v
    axis.set_major_locator(FixedLocator(values))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if _key(v) in labelled else ""))
    axis.set_minor_formatter(NullFormatter())


def plain_log_ticks(axis) -> None:
    """A log axis labelled in plain numbers (20, 0.05, 1e-04) at ``PlainLogLocator``'s ticks
    (matplotlib would write 2 x 10^1, and label nothing where no power of ten is in view)."""
    axis.set_major_locator(PlainLogLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def readable_log_axes(fig) -> None:
    """``plain_log_ticks`` on every log axis of ``fig`` whose ticks nobody chose (still matplotlib's
    LogLocator): however little of a decade it spans, it has labelled ticks."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log" and type(axis.get_major_locator()) is LogLocator:
                plain_log_ticks(axis)


class PlainLogLocator(Locator):
    """The major ticks of a log axis, chosen when it is drawn: powers of ten where it spans two
    decades or more; else the first of 1, 2 and 5 times powers of ten (0.05, 0.1, 0.2), every digit
    times a power of ten (0.5, 0.6, 0.7) and evenly spaced numbers (0.52, 0.54, 0.56) that puts at
    least two ticks in view and leaves neither end of the axis unlabelled over more than
    ``END_GAP`` of its length."""

    END_GAP = 0.4

    def __init__(self):
        self.decades = LogLocator()
        self.even = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])

    def set_axis(self, axis) -> None:
        super().set_axis(axis)
        self.decades.set_axis(axis)

    def __call__(self) -> list[float]:
        return self.tick_values(*self.axis.get_view_interval())

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        low, high = sorted((vmin, vmax))
        if not (low > 0 and high > low) or math.log10(high / low) >= 2:
            return list(self.decades.tick_values(vmin, vmax))
        span = math.log10(high / low)

        def inside(v: float) -> bool:
            return low * (1 - 1e-9) <= v <= high * (1 + 1e-9)

        def covers(ticks: list[float]) -> bool:
            return len(ticks) >= 2 and max(math.log10(ticks[0] / low), math.log10(high / ticks[-1])) <= \
                self.END_GAP * span

        decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for mantissas in ((1, 2, 5), range(1, 10)):
            ticks = [m * 10.0 ** e for e in decades for m in mantissas if inside(m * 10.0 ** e)]
            if covers(ticks):
                return ticks
        return [float(f"{v:.12g}") for v in self.even.tick_values(low, high) if inside(v)]


def _key(value: float) -> float:
    return float(f"{value:.9g}")
