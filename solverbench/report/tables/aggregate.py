"""Sweep rows averaged over seeds: one record per (NFE, solver label), failures kept and explained."""
from __future__ import annotations

import pandas as pd

from solverbench.report.metric_columns import MetricColumn
from solverbench.report.tables.model import format_number

BY = ("nfe_block", "solver_label")


def nfe_block(nfe: float) -> str:
    """The NFE block a row belongs to: its budget, or 'adaptive' where the solver chose its steps."""
    return "adaptive" if pd.isna(nfe) else str(int(nfe))


def block_order(block: str) -> float:
    return float("inf") if block == "adaptive" else float(block)


def aggregate(rows: pd.DataFrame, metrics: list[MetricColumn]) -> pd.DataFrame:
    """One record per (NFE block, solver label), in NFE order and the grid's solver order.

    Metric columns are means over the finished (``status == ok``) seeds; ``seeds`` and
    ``seeds_ok`` count rows, ``problem`` holds the first failure's status and reason.
    """
    rows = rows.assign(nfe_block=rows["nfe"].map(nfe_block))
    solver_order = {label: i for i, label in enumerate(dict.fromkeys(rows["solver_label"]))}
    records = []
    for (block, label), group in rows.groupby(list(BY), sort=False):
        ok = group[group["status"] == "ok"]
        bad = group[group["status"] != "ok"]
        record = {
            "nfe_block": block, "solver_label": label, "solver": group["solver"].iloc[0],
            "solver_params": group["solver_params"].iloc[0],
            "analysis_only": bool(group["analysis_only"].fillna(False).astype(bool).any()),
            "nfe_measured": ok["nfe_measured"].mean() if len(ok) else float("nan"),
            "seeds": len(group), "seeds_ok": len(ok),
            "problem": None if bad.empty else f"{bad['status'].iloc[0]}: {bad['error'].iloc[0]}",
        }
        record.update({m.name: ok[m.name].mean() if m.name in ok and len(ok) else float("nan") for m in metrics})
        records.append(record)
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    frame["_block"] = frame["nfe_block"].map(block_order)
    frame["_solver"] = frame["solver_label"].map(solver_order)
    return frame.sort_values(["_block", "_solver"]).drop(columns=["_block", "_solver"]).reset_index(drop=True)


def best_flags(values: pd.Series, ranked: pd.Series, metric: MetricColumn) -> pd.Series:
    """True where a ranked value equals the best ranked value as printed (ties all win).

    Nothing is best with fewer than two ranked values, or for a metric of unknown direction.
    """
    candidates = values[ranked].dropna()
    best = metric.best(candidates) if len(candidates) >= 2 else None
    if best is None:
        return pd.Series(False, index=values.index)
    return ranked & values.map(lambda v: not pd.isna(v) and format_number(v) == format_number(best))
