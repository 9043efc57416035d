"""``solverbench report``: the paper's tables and figures, rendered from results/ without rerunning.

For every grid and setting (backbone, time grid, guidance) of the results store:
Table 1 layout (Markdown, LaTeX booktabs, CSV), Table 3 ablations, convergence plots,
global-error order curves, sample grids; for LTE grids, the order curves and fitted
slopes; for inversion grids, round-trip and inversion errors; and ``index.md`` /
``index.html`` showing all of them.  Each study kind's rows are shown by the report section
registered for the kind (``register_report_section``; a plugin's kind may register its own).
"""
from solverbench.report.sections import ReportContext, ReportSection, register_report_section
from solverbench.report.write import NoResultsError, write_report

__all__ = ["write_report", "NoResultsError", "ReportSection", "ReportContext", "register_report_section"]
