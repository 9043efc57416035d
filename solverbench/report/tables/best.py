"""What bold means in a table: in each group (an NFE block, a budget), the best value of a ranked metric and
every value not shown worse than it.

Where the group's cells kept paired arrays, each value is compared with the best on the same samples
(``report.pairing``, ``solverbench.paired``) and Holm's correction runs over the group's comparisons at family
level 5%: a value whose comparison is not rejected is not shown worse, and bold.  A value that cannot be
paired with the best (its cells kept no arrays, or share no noise with the best's) falls back to the
unpaired rule (``aggregate.best_flags``): bold where its 95% interval overlaps the best one's.  Each tie
compared on the same samples carries the sample size that would separate it (``paired.samples_to_separate``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from solverbench.metric_columns import MetricColumn
from solverbench.paired import ALPHA, Difference, holm, samples_to_separate
from solverbench.report.pairing import PairedComparison, Unpaired
from solverbench.report.tables.aggregate import best_flags
from solverbench.report.tables.model import format_number

PAIRED = "paired, Holm"
UNPAIRED = "unpaired intervals"


def not_shown_worse(than: str = "it") -> str:
    """``not shown worse than it at 95%: paired, Holm (...), or unpaired intervals ...``: the rule of a tie."""
    return (f"not shown worse than {than} at 95%: {PAIRED} (against the best on the same samples, Holm's "
            f"correction over the group's comparisons at family level {ALPHA:.0%}), or {UNPAIRED} where cells "
            "cannot be paired (its 95% interval overlaps the best one's)")


def bold_note(where: str = "in each NFE block") -> str:
    """What bold means, for a table whose groups are named by ``where``."""
    return (f"Bold: the best value {where} and every value {not_shown_worse()}; so ties show as ties (↓ lower is "
            "better, ↑ higher is better).")


@dataclass(frozen=True)
class Tie:
    """A value compared with the best on the same samples and not shown worse."""

    solver: str
    best: str
    difference: Difference  # solver minus best
    level: float  # the Holm level its comparison faced
    lower_is_better: bool

    @property
    def samples_needed(self) -> Optional[float]:
        excess = self.difference.value if self.lower_is_better else -self.difference.value
        return samples_to_separate(self.difference.samples, excess, self.difference.se, self.level)

    def sentence(self, where: str) -> str:
        """``ba-single vs ba at NFE 10: about 3,100 samples would separate them (observed difference 0.0021,
        paired se 0.0012 at 1024)``."""
        d = self.difference
        head = f"{self.solver} vs {self.best}{where}: "
        needed = self.samples_needed
        if needed is None:
            return head + ("no difference observed" if d.value == 0 else
                           f"no difference on the worse side observed ({format_number(d.value, 2)})")
        return head + (f"about {_about(needed)} samples would separate them (observed difference "
                       f"{format_number(abs(d.value), 2)}, paired se {format_number(d.se, 2)} at {d.samples:,})")


def _about(n: float) -> str:
    """Two significant digits, with thousands separators: 3,100."""
    digits = max(0, len(str(int(n))) - 2)
    return f"{int(round(n, -digits)):,}"


@dataclass
class BestMarks:
    """The bold values of one metric in one group, and how each was compared with the best."""

    bold: pd.Series
    paired: list[str] = field(default_factory=list)  # solvers compared with the best on the same samples
    unpaired: dict[str, str] = field(default_factory=dict)  # solver -> why it was compared by intervals
    ties: list[Tie] = field(default_factory=list)

    @property
    def rule(self) -> Optional[str]:
        """``paired, Holm``, ``unpaired intervals (why)``, or both, naming the unpaired; None with nothing compared."""
        if not self.unpaired:
            return PAIRED if self.paired else None
        why = "; ".join(dict.fromkeys(self.unpaired.values()))
        if not self.paired:
            return f"{UNPAIRED} ({why})"
        return f"{PAIRED}, {UNPAIRED} for {', '.join(self.unpaired)} ({why})"


def _labels(records: pd.DataFrame) -> pd.Series:
    return records["solver_label"] if "solver_label" in records else pd.Series(records.index, index=records.index)


def best_marks(records: pd.DataFrame, ranked: pd.Series, metric: MetricColumn,
               comparison: Optional[PairedComparison] = None) -> BestMarks:
    """The bold values of ``metric`` among the ``ranked`` records of one group (``aggregate`` records, with their
    ``cells``); without a ``comparison`` (no results store to read), every value by the unpaired rule."""
    overlap = best_flags(records, ranked, metric)
    candidates = records[metric.name][ranked].dropna()
    best = metric.best(candidates)
    marks = BestMarks(overlap)
    if best is None or len(candidates) < 2:
        return marks
    labels = _labels(records)
    winner = candidates.index[candidates == best][0]
    cells = records["cells"] if "cells" in records else pd.Series([()] * len(records), index=records.index)
    others = [i for i in candidates.index if i != winner]
    differences = {}
    for i in others:
        try:
            if comparison is None:
                raise Unpaired("no results store to read")
            differences[i] = comparison.difference(_cells(cells[i]), _cells(cells[winner]))
        except Unpaired as why:
            marks.unpaired[labels[i]] = str(why)
    rejected, levels = holm([d.p_worse for d in differences.values()])
    bold = overlap.copy()
    for (i, difference), worse, level in zip(differences.items(), rejected, levels):
        bold[i] = not worse
        marks.paired.append(labels[i])
        if not worse:
            marks.ties.append(Tie(labels[i], labels[winner], difference, level, metric.lower_is_better is not False))
    marks.bold = bold
    return marks


def _cells(value: object) -> tuple:
    return value if isinstance(value, tuple) else ()


def rule_notes(marks: list[tuple[MetricColumn, str, BestMarks]]) -> list[str]:
    """One note per metric and comparison rule: the groups (``at NFE 5, 7``) each rule compared in."""
    by_rule: dict[tuple[str, str], list[str]] = {}
    for metric, where, mark in marks:
        if mark.rule is not None:
            by_rule.setdefault((metric.label, mark.rule), []).append(where)
    return [f"{label}: {rule} {_joined(places)}." for (label, rule), places in by_rule.items()]


def _joined(places: list[str]) -> str:
    """``at NFE 5``, ``at NFE 7`` -> ``at NFE 5, 7``."""
    prefix = "at NFE "
    if all(p.startswith(prefix) for p in places):
        return prefix + ", ".join(p[len(prefix):] for p in places)
    return ", ".join(places)
