"""The pairwise table of one NFE block and metric: solver x solver, each entry the paired difference row minus
column with its 95% interval (``tables.pairwise_blocks``); under it, what would separate each tie from the best."""
from __future__ import annotations

from solverbench.report.tables.pairwise_blocks import PairwiseBlock
from solverbench.report.tables.model import Cell, Row, Table, format_with_interval

NOT_PAIRED = "—"


def pairwise_table(block: PairwiseBlock, title: str) -> Table:
    """Rows and columns are the block's ranked solvers, numbered; the CSV names the columns by solver."""
    metric, labels = block.metric, block.labels
    table = Table(f"Pairwise paired differences in {metric.label}{metric.arrow} at NFE {block.block}: row minus "
                  f"column on the same samples, with its 95% interval. {title}.",
                  ["", "solver"] + [f"({j + 1})" for j in range(len(labels))], text_columns=(0, 1))
    for r, label in enumerate(labels):
        cells, record = [Cell(f"({r + 1})"), Cell(label)], {"solver": label}
        for c, column in enumerate(labels):
            d = block.differences[r][c]
            cells.append(Cell("" if r == c else NOT_PAIRED if d is None else format_with_interval(d.value, d.low,
                                                                                                  d.high)))
            record.update({column: None if d is None else d.value, f"{column}_ci_low": None if d is None else d.low,
                           f"{column}_ci_high": None if d is None else d.high})
        table.rows.append(Row(cells, record))
    better = "negative" if metric.lower_is_better else "positive"
    table.notes = [
        f"Entry (row, column): the row's {metric.label} minus the column's, on the same samples; {better} favours the "
        "row.  Per-sample metrics: the mean per-sample difference with its paired bootstrap percentile interval; "
        "distribution metrics: the difference of the values ± 1.96 times the standard deviation of the difference "
        "of their bootstrap replicates (drawn with the same indices); several seeds: combined as the intervals are. "
        "Column (j) is row (j).",
    ]
    if block.unpaired:
        table.notes.append(f"{NOT_PAIRED}: not paired ({'; '.join(block.unpaired)}).")
    where = f" at NFE {block.block}"
    if block.marks.ties:
        table.notes.append("Not shown worse than the best (paired, Holm), each with the samples that would separate "
                           "it at the observed difference and spread (80% power at the Holm level it faced):")
        table.notes += [tie.sentence(where) + "." for tie in block.marks.ties]
    elif block.marks.paired:
        table.notes.append("Every solver compared with the best on the same samples is shown worse than it "
                           "(paired, Holm).")
    return table
