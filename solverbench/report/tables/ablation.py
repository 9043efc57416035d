"""The paper's Table 3 layout: the variants of one solver family against NFE, in one metric.

A family is a solver name and the names that extend it with a dash (``ba``, ``ba-single``,
``ba-oracle``; ``flow-dpm`` alone when no ``flow`` is registered).  A family gets a table when
it has two or more variants; the columns name what distinguishes them (the solver name where
it differs, and every parameter in ``solver_params`` that takes more than one value).
"""
from __future__ import annotations

import json
from typing import Optional

import pandas as pd

from solverbench.metric_columns import MetricColumn
from solverbench.report.pairing import CellArrays, PairedComparison
from solverbench.report.tables.aggregate import aggregate
from solverbench.report.tables.best import best_marks, bold_note, rule_notes
from solverbench.report.tables.model import Cell, Row, Table, format_with_interval
from solverbench.uncertainty import ci_columns


def family_roots(names: list[str]) -> dict[str, str]:
    """solver name -> the shortest name of the grid it extends (``ba-single`` -> ``ba``)."""
    return {name: min((root for root in names if name == root or name.startswith(root + "-")), key=len)
            for name in names}


def _variants(records: pd.DataFrame) -> pd.DataFrame:
    """One row per solver label: its name and parameters, in the grid's order."""
    variants = records.drop_duplicates("solver_label")[["solver_label", "solver", "solver_params", "analysis_only"]]
    params = variants["solver_params"].map(lambda p: json.loads(p) if p else {})
    return variants.assign(params=params.values).reset_index(drop=True)


def _distinguishing(variants: pd.DataFrame) -> tuple[list[str], dict[str, object]]:
    """(parameters that vary, parameters fixed across the family with their value)."""
    keys = list(dict.fromkeys(k for p in variants["params"] for k in p))
    values = {k: [json.dumps(p.get(k)) for p in variants["params"]] for k in keys}
    varying = [k for k in keys if len(set(values[k])) > 1]
    fixed = {k: variants["params"].iloc[0][k] for k in keys if k not in varying}
    return varying, fixed


def ablation_tables(rows: pd.DataFrame, metric: MetricColumn, title: str, arrays: Optional[CellArrays] = None
                    ) -> dict[str, Table]:
    """family root -> its Table 3 layout in ``metric``, for every family with two or more variants; ``arrays``
    (what the cells kept) to compare the variants with the best on the same samples."""
    records = aggregate(rows, [metric])
    records = records[records["nfe_block"] != "adaptive"] if len(records) else records
    if records.empty:
        return {}
    roots = family_roots(list(dict.fromkeys(records["solver"])))
    out = {}
    for root in dict.fromkeys(roots.values()):
        family = records[records["solver"].map(roots) == root]
        variants = _variants(family)
        if len(variants) < 2:
            continue
        out[root] = _table(family, variants, metric, root, title,
                           PairedComparison(arrays, metric) if arrays is not None else None)
    return out


def _table(family: pd.DataFrame, variants: pd.DataFrame, metric: MetricColumn, root: str, title: str,
           comparison: Optional[PairedComparison]) -> Table:
    varying, fixed = _distinguishing(variants)
    show_name = variants["solver"].nunique() > 1
    blocks = sorted(family["nfe_block"].unique(), key=int)
    columns = [metric.name, *ci_columns(metric.name)]
    by_block = {b: family[family["nfe_block"] == b].set_index("solver_label")[columns + ["cells"]]
                .reindex(variants["solver_label"]) for b in blocks}
    ranked = pd.Series((~variants["analysis_only"]).to_numpy(), index=variants["solver_label"])
    marks = {b: best_marks(by_block[b], ranked, metric, comparison) for b in blocks}
    best = {b: marks[b].bold for b in blocks}
    labels = (["solver"] if show_name else []) + varying
    table = Table(f"Ablation (Table 3 layout) of {root}: {metric.label}{metric.arrow} by variant and NFE. {title}.",
                  labels + [f"NFE {b}" for b in blocks], text_columns=tuple(range(len(labels))))
    for _, variant in variants.iterrows():
        name = variant["solver"] + (" (analysis only)" if variant["analysis_only"] else "")
        cells = ([Cell(name)] if show_name else []) + [Cell(str(variant["params"].get(k, "–"))) for k in varying]
        label = variant["solver_label"]
        values = {b: by_block[b].loc[label] for b in blocks}
        cells += [Cell(format_with_interval(*values[b][columns]), bool(best[b][label])) for b in blocks]
        record = {"solver": label, "analysis_only": variant["analysis_only"],
                  **{k: variant["params"].get(k) for k in varying},
                  **{f"nfe_{b}{suffix}": values[b][column] for b in blocks
                     for suffix, column in zip(("", "_ci_low", "_ci_high"), columns)}}
        table.rows.append(Row(cells, record))
    table.notes += [bold_note("at each NFE"), *rule_notes([(metric, f"at NFE {b}", marks[b]) for b in blocks]),
                    "± is half the interval's width; analysis-only variants are never ranked."]
    if fixed:
        table.notes.append("Fixed across these variants: " + ", ".join(f"{k}={v}" for k, v in fixed.items()) + ".")
    return table
