"""Sweep rows averaged over seeds: one record per (NFE, solver label), failures kept and explained.

Each metric ``m`` of a record is the mean over the finished seeds, with its 95% interval
``m_ci_low`` / ``m_ci_high`` combined from the seeds' own (``solverbench.uncertainty``) and,
where the metric compares with data, its noise floor ``m_floor`` (and interval).
"""
from __future__ import annotations

import pandas as pd

from solverbench.report.learned_grids import came_back_uniform
from solverbench.metric_columns import MetricColumn
from solverbench.report.pairing import seed_cells
from solverbench.report.tables.model import format_number
from solverbench.uncertainty import ci_columns, combine_seeds, intervals_overlap

BY = ("nfe_block", "solver_label")
NAN = float("nan")


def nfe_block(nfe: float) -> str:
    """The NFE block a row belongs to: its budget, or 'adaptive' where the solver chose its steps."""
    return "adaptive" if pd.isna(nfe) else str(int(nfe))


def block_order(block: str) -> float:
    return float("inf") if block == "adaptive" else float(block)


def with_interval(rows: pd.DataFrame, column: str, nonnegative: bool = False) -> dict[str, float]:
    """``{column, column_ci_low, column_ci_high}`` over ``rows`` (seeds): the mean and its interval,
    cut at 0 for a ``nonnegative`` metric (the seeds' combined interval is symmetric); NaN interval
    where the rows hold none (results written before intervals were recorded)."""
    low, high = ci_columns(column)
    values = rows[column].dropna() if column in rows else pd.Series(dtype=float)
    if values.empty:
        return {column: NAN, low: NAN, high: NAN}
    kept = rows.loc[values.index]
    lows = kept[low] if low in kept else pd.Series(NAN, index=kept.index)
    highs = kept[high] if high in kept else pd.Series(NAN, index=kept.index)
    mean, ci_low, ci_high = combine_seeds(values.to_numpy(float), lows.to_numpy(float), highs.to_numpy(float))
    return {column: mean, low: max(ci_low, 0.0) if nonnegative and ci_low < 0 else ci_low, high: ci_high}


def block_means(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per (NFE block, solver label): the mean over the finished rows (seeds) of each of ``columns`` (NaN
    where the rows do not record one), to merge beside ``aggregate``'s records."""
    ok = rows[rows["status"] == "ok"]
    return (ok.assign(nfe_block=ok["nfe"].map(nfe_block)).reindex(columns=[*BY, *columns])
            .groupby(list(BY), sort=False).mean().reset_index())


def noise_floor(rows: pd.DataFrame, metric: MetricColumn) -> dict[str, float]:
    """The metric's data-versus-data value over the setting's seeds (one per seed), with its interval."""
    column = f"{metric.name}_floor"
    if column not in rows or not rows[column].notna().any():
        return with_interval(pd.DataFrame(), column)
    per_seed = rows[rows[column].notna()].drop_duplicates("seed")
    return with_interval(per_seed, column, metric.nonnegative)


def aggregate(rows: pd.DataFrame, metrics: list[MetricColumn]) -> pd.DataFrame:
    """One record per (NFE block, solver label), in NFE order and the grid's solver order.

    Metric columns are means over the finished (``status == ok``) seeds with their intervals;
    ``seeds`` and ``seeds_ok`` count rows, ``problem`` holds the first failure's status and reason;
    ``learned_uniform`` says the cell's learned time grid came back the uniform grid (``learned_grids``);
    ``cells`` names the finished cells (``pairing.SeedCell``) for comparisons on the same samples.
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
            "learned_uniform": came_back_uniform(group),
            "nfe_measured": ok["nfe_measured"].mean() if len(ok) else NAN,
            "seeds": len(group), "seeds_ok": len(ok),
            "problem": None if bad.empty else f"{bad['status'].iloc[0]}: {bad['error'].iloc[0]}",
            "cells": seed_cells(ok, [m.name for m in metrics]),
        }
        for m in metrics:
            record.update(with_interval(ok, m.name, m.nonnegative))
        records.append(record)
    frame = pd.DataFrame(records)
    if frame.empty:
        return frame
    frame["_block"] = frame["nfe_block"].map(block_order)
    frame["_solver"] = frame["solver_label"].map(solver_order)
    return frame.sort_values(["_block", "_solver"]).drop(columns=["_block", "_solver"]).reset_index(drop=True)


def best_flags(records: pd.DataFrame, ranked: pd.Series, metric: MetricColumn) -> pd.Series:
    """True for the best ranked value and for every ranked value whose 95% interval overlaps the best
    one's (ties are shown as ties); without intervals, ties are values equal as printed.

    A block's only ranked value is its best; nothing is best for a metric that is not ranked.
    """
    values = records[metric.name]
    low, high = ci_columns(metric.name)
    candidates = values[ranked].dropna()
    best = metric.best(candidates)
    if best is None:
        return pd.Series(False, index=values.index)
    winner = candidates.index[candidates == best][0]
    lows = records[low] if low in records else pd.Series(NAN, index=records.index)
    highs = records[high] if high in records else pd.Series(NAN, index=records.index)
    best_interval = (lows[winner], highs[winner])

    def tied(i) -> bool:
        if pd.isna(values[i]):
            return False
        if format_number(values[i]) == format_number(best):
            return True
        interval = (lows[i], highs[i])
        if any(pd.isna(v) for v in (*interval, *best_interval)):
            return False
        return intervals_overlap(interval, best_interval)

    return ranked & pd.Series([tied(i) for i in values.index], index=values.index, dtype=bool)
