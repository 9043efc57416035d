"""Which result columns are metrics, what they are called, their units, which way is better, and which keep
paired arrays: what the report ranks and shows, and what a sweep's sequential sample sizes decide on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from solverbench.registry import METRICS


DERIVED_SUFFIXES = ("_ci_low", "_ci_high", "_floor")  # a metric's interval and noise floor, not metrics


@dataclass(frozen=True)
class DisplayUnit:
    name: str  # "ms"
    size: float  # one of it in the stored unit: 1e-3 (seconds)
    meaning: str  # "10^-3 s"


@dataclass(frozen=True)
class MetricColumn:
    name: str  # the results column
    label: str  # what a reader calls it
    unit: str
    lower_is_better: Optional[bool]  # None: never ranked (see unranked_reason)
    unranked_reason: str = "a plugin's metric whose direction solverbench does not know"
    # an error or distance whose estimate is never below 0, so its intervals are cut at 0 (not KID, whose
    # unbiased estimate can be)
    nonnegative: bool = False
    # False: left out of Table 1, whose columns read as rankings, for a metric where neither direction is better
    in_table1: bool = True
    # a cost's display units, smallest first: a table column takes the smallest in which its values stay
    # readable (tables.cost_units)
    units: tuple[DisplayUnit, ...] = ()
    # its cells keep paired arrays of it (``per_sample/`` or ``bootstrap/``, solverbench.paired_arrays): it can be
    # compared between cells on the same samples
    paired: bool = False

    @property
    def arrow(self) -> str:
        return {True: " ↓", False: " ↑", None: ""}[self.lower_is_better]

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})"

    def best(self, values: pd.Series) -> Optional[float]:
        """The best of ``values`` (NaN ignored), or None when unranked or empty."""
        values = values.dropna()
        if self.lower_is_better is None or values.empty:
            return None
        return float(values.min() if self.lower_is_better else values.max())


KNOWN = (
    MetricColumn("trajectory_error", "trajectory error", "RMS to reference endpoint, data units", True,
                 nonnegative=True, paired=True),
    MetricColumn("trajectory_error_max", "max trajectory error", "worst sample's RMS, data units", None,
                 "a maximum over samples, which has no useful interval", nonnegative=True),
    MetricColumn("sliced_wasserstein", "sliced Wasserstein-2", "to data samples, data units", True, nonnegative=True,
                 paired=True),
    MetricColumn("energy_distance", "energy distance", "to data samples, data units", True, nonnegative=True,
                 paired=True),
    # Not ranked: samples that collapse onto the modes score *higher* than exact ones, so
    # the value to read is its distance from the reference (adaptive) row's.
    MetricColumn("log_likelihood", "data log-likelihood", "mean log p(x | y), nats", None,
                 "higher is not better: samples collapsed onto the modes score higher than exact ones; "
                 "read its distance from the reference row", in_table1=False, paired=True),
    MetricColumn("fid", "FID", "feature-space Frechet distance, unitless", True, nonnegative=True, paired=True),
    MetricColumn("sfid", "sFID", "spatial-feature Frechet distance, unitless", True, nonnegative=True, paired=True),
    MetricColumn("kid", "KID", "kernel inception distance, unitless", True, paired=True),
    MetricColumn("kid_std", "KID spread", "std of KID over its subsets, unitless", None,
                 "the spread of KID over its subsets, not a quality (KID's interval is its own)"),
    MetricColumn("precision", "precision", "fraction of samples on the data manifold (k=3)", False),
    MetricColumn("recall", "recall", "fraction of data covered by samples (k=3)", False),
    MetricColumn("inception_score", "Inception Score", "unitless", False, paired=True),
    MetricColumn("inception_score_std", "IS spread", "std of IS over its 10 splits, unitless", None,
                 "the spread of IS over its splits, not a quality (IS's interval is its own)"),
    # kind: inversion (docs/inversion.md)
    MetricColumn("roundtrip_error", "round-trip error", "RMS of invert-then-regenerate to the data, data units",
                 True, nonnegative=True),
    MetricColumn("inversion_error", "inversion error", "RMS to the exact inversion's noise, noise units", True,
                 nonnegative=True),
    MetricColumn("edit_accuracy", "edit accuracy", "fraction the classifier labels as the target class", False),
    MetricColumn("edit_distance", "edit distance", "RMS of the edit to its source, data units", True, nonnegative=True),
    MetricColumn("source_accuracy", "classifier on the sources", "fraction of unedited data labelled right", None,
                 "the classifier on the unedited data, the same for every solver: the ceiling of edit accuracy"),
)
SHAPE_LABELS = {"median": "median", "q90": "90% quantile", "q99": "99% quantile"}  # solverbench.metrics.shape


def shape_of(metric: MetricColumn) -> tuple[MetricColumn, ...]:
    """The quantile columns of a per-sample metric, and its fraction above the grid's threshold: ranked as the
    metric is, drawn against NFE, kept out of Table 1 (the report's shape table shows them)."""
    quantiles = tuple(MetricColumn(f"{metric.name}_{suffix}", f"{metric.label}, {label}", metric.unit,
                                   metric.lower_is_better, metric.unranked_reason, metric.nonnegative, in_table1=False)
                      for suffix, label in SHAPE_LABELS.items())
    above = MetricColumn(f"{metric.name}_above", f"{metric.label}, fraction above the threshold",
                         "fraction of samples above metric_options.exceedance", metric.lower_is_better,
                         metric.unranked_reason, True, in_table1=False)
    return quantiles + (above,)


KNOWN += tuple(shape for m in KNOWN if m.name in ("trajectory_error", "log_likelihood") for shape in shape_of(m))
SHAPE_SUFFIXES = tuple(f"_{suffix}" for suffix in SHAPE_LABELS) + ("_above",)
# what a cell cost (Table 1's last columns): never ranked, never drawn against NFE as a quality; stored in
# seconds, FLOPs and bytes, shown in the units below
FLOP_UNITS = (DisplayUnit("MFLOPs", 1e6, "10^6 FLOPs"), DisplayUnit("GFLOPs", 1e9, "10^9 FLOPs"),
              DisplayUnit("TFLOPs", 1e12, "10^12 FLOPs"))
COSTS = (
    MetricColumn("wall_time_per_sample", "wall time per sample", "on the run's device", None,
                 "a cost, not a quality", units=(DisplayUnit("ms", 1e-3, "10^-3 s"),)),
    MetricColumn("flops_per_sample", "FLOPs per sample", "backbone + solver, torch's flop counter", None,
                 "a cost, not a quality", units=FLOP_UNITS),
    MetricColumn("solver_flops_per_sample", "solver FLOPs per sample",
                 "beside the backbone (a network of its own), torch's flop counter", None,
                 "a cost, not a quality", units=FLOP_UNITS),
    MetricColumn("peak_memory_per_sample", "peak memory per sample",
                 "of tensors a one-sample solve holds at once, weights excluded", None, "a cost, not a quality",
                 units=(DisplayUnit("KB", 1e3, "1000 bytes"), DisplayUnit("MB", 1e6, "10^6 bytes"),
                        DisplayUnit("GB", 1e9, "10^9 bytes"))),
)
COST_NAMES = tuple(m.name for m in COSTS)
INVERSION_METRICS = ("roundtrip_error", "inversion_error")
EDIT_METRICS = ("edit_accuracy", "edit_distance", "source_accuracy")
KNOWN_BY_NAME = {m.name: m for m in KNOWN + COSTS}
# the ranked columns whose cells keep paired arrays: those in which a paired comparison can show one cell worse than
# another (each the column of the metric of its name)
SEPARABLE = tuple(m.name for m in KNOWN if m.paired and m.lower_is_better is not None)


def is_derived(column: str) -> bool:
    """A metric's interval or noise-floor column (``fid_ci_low``, ``fid_floor``, ``fid_floor_ci_high``)."""
    return any(column.endswith(suffix) for suffix in DERIVED_SUFFIXES)


def cost_columns(frame: pd.DataFrame) -> list[MetricColumn]:
    """The cost columns of ``frame`` that hold a value (wall time, FLOPs), for Table 1's last columns."""
    return [m for m in COSTS if m.name in frame and frame[m.name].notna().any()]


def metric_columns(frame: pd.DataFrame) -> list[MetricColumn]:
    """The metric columns of ``frame`` that hold a value, known ones first.

    A column is a metric if it is one of ``KNOWN`` or its name starts with a registered
    metric's name; a metric not in ``KNOWN`` has no known direction and is never ranked.
    """
    def filled(name: str) -> bool:
        return name in frame and frame[name].notna().any()

    known = [m for m in KNOWN if filled(m.name)]
    registered = METRICS.names()
    other = [MetricColumn(c, c.replace("_", " "), "as the metric reports it", None,
                          in_table1=not c.endswith(SHAPE_SUFFIXES)) for c in frame.columns
             if c not in KNOWN_BY_NAME and filled(c) and any(c.startswith(r) for r in registered)
             and not is_derived(c) and pd.api.types.is_numeric_dtype(frame[c])]
    return known + other
