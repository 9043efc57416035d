"""A study kind: what one grid of that kind measures, cut into units of work for the engine.

A study kind is registered like a solver (``@register_study(name)``) and named by a grid's
``kind:``; the engine imports none.  It declares the grid keys it has no use for, the key
of its own settings (parsed by ``parse_settings``, checked against the parsed grid by
``check_grid``), and turns a grid into ``Unit``s: the ids of the rows a unit writes, its
label for the progress bar, and the function that computes those rows through the run's
``Workspace`` (backbones on the device, prepared solvers, draws, references, row heads).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import pandas as pd

from solverbench.engine.loop import Unit
from solverbench.grid.values import Grid


class Study:
    registered_name: str = "?"
    unit: str = "cell"  # what one row is, as the console counts them
    settings_key: Optional[str] = None  # the grid key of this kind's own settings
    unused_keys: tuple[str, ...] = ()  # common grid keys a grid of this kind has no use for (refused)
    needs_budgets: bool = False  # every fixed-step solver of the grid needs NFE budgets
    sharded: bool = False  # its units split their samples across torchrun's processes (solverbench.distributed)
    sequential_samples: bool = False  # it takes num_samples: {start, max, until} (sequential sample sizes)

    @classmethod
    def parse_settings(cls, raw: Mapping[str, Any]) -> Any:
        """This kind's settings from the raw grid (GridError on a bad one); None without any."""
        return None

    @classmethod
    def check_grid(cls, grid: Grid) -> None:
        """Refuse, with a GridError, a parsed grid this kind cannot run."""

    def __init__(self, grid: Grid, workspace: Any):
        self.grid = grid
        self.workspace = workspace

    def units(self) -> list[Unit]:
        raise NotImplementedError

    def describe(self, row: pd.Series) -> str:
        """A row as the closing summary names it (rows with the same text and reason are counted together)."""
        return f"{row['solver_label']} seed={row['seed']}"
