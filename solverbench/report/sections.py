"""Report sections by study kind: how the rows of each kind are grouped into settings and rendered.

Every study kind's rows are shown by the report section registered under the kind's name,
as a solver is registered under its own::

    from solverbench.report import ReportContext, ReportSection, register_report_section

    @register_report_section("stiffness")
    class StiffnessSection(ReportSection):
        def setting_keys(self, rows):
            return super().setting_keys(rows) + ["tolerance"]  # one setting per tolerance besides the usual

        def render(self, setting, context):
            ...  # a Section of tables (items.write_table) and figures (items.figure_item)

The built-in kinds' sections (``sweep``, ``lte``, ``inversion``) are registered in this
package; a plugin file that adds a study kind may add its section the same way.  Rows of a
kind with no section registered are listed as stored (``plain_section``): nothing is ranked
or drawn for a kind whose tables the report does not know.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from solverbench.registry import Registry
from solverbench.report.figures.style import SolverStyles
from solverbench.report.items import Section
from solverbench.report.settings import COMMON_KEYS, Setting

REPORT_SECTIONS = Registry("report section")  # study kind -> its ReportSection subclass
register_report_section = REPORT_SECTIONS.register


@dataclass(frozen=True)
class ReportContext:
    """Where a section writes its files and reads saved outputs, and the report's solver styles."""

    out_dir: Path  # the report's folder; a setting writes under out_dir / setting.directory
    results_dir: Path  # the results store (saved samples and edits are under results_dir / grid)
    styles: SolverStyles  # one color, marker and line style per solver label, shared by every figure


class ReportSection:
    """How the report shows the rows of one study kind."""

    registered_name: str = "?"

    def setting_keys(self, rows: pd.DataFrame) -> list[str]:
        """The columns whose values split one grid's rows of this kind into settings (each with tables and
        figures of its own, so numbers of different settings never share a ranking).  By default: backbone,
        its parameters, the time grid (where the rows record one) and the guidance."""
        keys = [key for key in COMMON_KEYS if key in rows]
        if "schedule" in rows and rows["schedule"].notna().any():
            keys.insert(keys.index("backbone_params") + 1 if "backbone_params" in keys else 0, "schedule")
        return keys

    def render(self, setting: Setting, context: ReportContext) -> Section:
        """The section of one setting: its tables and figures, written under ``context.out_dir``."""
        raise NotImplementedError

