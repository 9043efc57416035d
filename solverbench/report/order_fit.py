"""Empirical orders: least-squares slopes of log(error) against log(step size or NFE).

Slopes are fitted only where the error is well above what the reference can resolve
(``floor``) and well below O(1) (``FIT_CEILING``), as diffrax's order tests do.
- LTE curves: error of one step against the interval size H; theory: slope = order + 1;
  floor: 1000 x the reference solve's tolerance.
- Global-error curves: trajectory error against NFE; theory: slope = -order;
  floor: 1000 x the machine epsilon of the samples' dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import torch

FIT_CEILING = 0.1
FLOOR_FACTOR = 1000.0


@dataclass
class OrderCurve:
    label: str
    x: np.ndarray  # interval sizes H or NFE budgets, increasing
    error: np.ndarray
    theory: Optional[float]  # the slope theory predicts; None where the solver declares no order
    floor: float
    analysis_only: bool = False
    problem: Optional[str] = None  # why the curve has no points: "<status>: <error>"

    @property
    def short_problem(self) -> Optional[str]:
        """``problem`` cut to its status and the error's first clause ("error: no exact-history step")."""
        if self.problem is None:
            return None
        status, _, error = self.problem.partition(": ")
        return f"{status}: {error.split(':')[0]}"

    @property
    def in_window(self) -> np.ndarray:
        return (self.error > self.floor) & (self.error < FIT_CEILING)

    def _fit(self) -> Optional[tuple[float, float]]:
        """(slope, intercept) of log(error) = slope log(x) + intercept over the fit window."""
        use = self.in_window
        if use.sum() < 2:
            return None
        slope, intercept = np.polyfit(np.log(self.x[use]), np.log(self.error[use]), 1)
        return float(slope), float(intercept)

    @property
    def slope(self) -> Optional[float]:
        """The least-squares slope over the fit window; None with fewer than two points there."""
        fit = self._fit()
        return None if fit is None else fit[0]

    def fitted_line(self) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """The fit over its window, for drawing."""
        fit = self._fit()
        if fit is None:
            return None
        x = self.x[self.in_window]
        return x, np.exp(fit[1]) * x ** fit[0]


def _curves(rows: pd.DataFrame, x: str, error: str, theory, floor) -> list[OrderCurve]:
    curves = []
    for label, group in rows.groupby("solver_label", sort=False):
        ok = group[group["status"] == "ok"]
        means = ok.groupby(x)[error].mean().sort_index()
        problem = None if len(ok) else f"{group['status'].iloc[0]}: {group['error'].iloc[0]}"
        curves.append(OrderCurve(label, means.index.to_numpy(float), means.to_numpy(float), theory(group.iloc[0]),
                                 floor(group.iloc[0]), bool(group["analysis_only"].fillna(False).any()), problem))
    return curves


def _declared(order) -> Optional[float]:
    return None if order is None or pd.isna(order) else float(order)


def _lte_theory(row: pd.Series) -> Optional[float]:
    return _declared(row["lte_order_theory"])


def _lte_floor(row: pd.Series) -> float:
    return FLOOR_FACTOR * max(row["reference_rtol"], row["reference_atol"])


def _global_theory(row: pd.Series) -> Optional[float]:
    order = _declared(row["solver_order"])
    return None if order is None else -order


def _dtype_floor(row: pd.Series) -> float:
    return FLOOR_FACTOR * torch.finfo(getattr(torch, row["dtype"])).eps


def lte_curves(rows: pd.DataFrame) -> list[OrderCurve]:
    """Mean LTE (over start times, seeds and samples) against H, one curve per solver."""
    return _curves(rows, "H", "lte", _lte_theory, _lte_floor)


def global_error_curves(rows: pd.DataFrame) -> list[OrderCurve]:
    """Mean trajectory error against NFE, one curve per fixed-step solver."""
    return _curves(rows[rows["nfe"].notna()], "nfe", "trajectory_error", _global_theory, _dtype_floor)
