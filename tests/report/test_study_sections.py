"""A study kind added by a plugin file gets its own report section where it registers one, and a plain,
labelled listing of its rows where it does not; the built-in kinds render through the same registry.

The plugin file below is written as a user would write one: a study kind (the mean norm of a few
samples per solver and NFE) and, in its second form, the report section that shows it."""
import textwrap

import pandas as pd

from solverbench.engine import run_grid
from solverbench.engine.rows import row_head
from solverbench.grid import parse_grid
from solverbench.registry import load_plugin_file
from solverbench.report import write_report
from solverbench.report.plain_section import HEAD_COLUMNS
from solverbench.report.sections import REPORT_SECTIONS
from solverbench.report.split import section_for


STUDY = '''
import torch

from solverbench import register_study, sample
from solverbench.engine import Study, Unit
from solverbench.engine.rows import cell_identity, row_head
from solverbench.hashing import spec_hash


@register_study("{kind}")
class SampleNorms(Study):
    """The mean norm of a few samples of every solver at its budgets."""

    needs_budgets = True

    def units(self):
        grid, units = self.grid, []
        for backbone in grid.backbones:
            for solver in grid.solvers:
                for nfe in solver.budgets:
                    for seed in grid.seeds:
                        guidance = grid.guidances_for(nfe)[0]
                        cell_id = spec_hash(cell_identity(grid, backbone, solver, guidance, seed, nfe=nfe,
                                                          study="{kind}"))
                        units.append(Unit([cell_id], f"{{solver.label}} nfe={{nfe}}",
                                          lambda b=backbone, s=solver, n=nfe, g=guidance, seed=seed, i=cell_id:
                                          [self.row(b, s, n, g, seed, i)]))
        return units

    def row(self, backbone, solver, nfe, guidance, seed, cell_id):
        row = row_head(self.grid, "{kind}", cell_id, backbone, solver, guidance, seed)
        noise = self.workspace.draws(backbone, seed).noise(torch.float32)
        result = sample(self.workspace.backbone(backbone), self.workspace.solver(solver, backbone), noise, nfe=nfe)
        return {{**row, "nfe": nfe, "sample_norm": result.samples.flatten(1).norm(dim=1).mean().item(),
                "status": "ok", "error": None}}
'''

SECTION = '''

from solverbench.report import ReportSection, register_report_section
from solverbench.report.items import Section, write_table
from solverbench.report.tables.model import Cell, Row, Table


@register_report_section("{kind}")
class SampleNormSection(ReportSection):
    def render(self, setting, context):
        table = Table(f"Sample norms. {{setting.title}}.", ["solver", "NFE", "mean norm"], text_columns=(0,))
        for _, row in setting.rows.iterrows():
            table.rows.append(Row([Cell(row["solver_label"]), Cell(str(int(row["nfe"]))),
                                   Cell(f"{{row['sample_norm']:.3f}}")], {{}}))
        return Section(setting.title, [write_table(table, context.out_dir, setting.directory / "norms",
                                                   "Mean sample norm by solver and NFE.")])
'''


def run_plugin_grid(tmp_path, kind: str, with_section: bool):
    plugin = tmp_path / f"{kind}.py"
    plugin.write_text(textwrap.dedent(STUDY.format(kind=kind) + (SECTION.format(kind=kind) if with_section else "")))
    load_plugin_file(plugin)
    grid = parse_grid({"name": kind, "kind": kind, "backbones": [{"name": "gmm", "params": {"preset": "gmm2d"}}],
                       "solvers": ["euler", "heun"], "nfe": [4, 8], "num_samples": 16, "batch_size": 16,
                       "metrics": []})
    run_grid(grid, tmp_path / "results", progress=False)
    return write_report(tmp_path / "results", tmp_path / "reports").parent


def test_a_plugin_kind_with_its_own_section_is_rendered_by_it(tmp_path):
    reports = run_plugin_grid(tmp_path, "sample-norms", with_section=True)
    table = (reports / "sample-norms" / "norms.md").read_text()
    assert "| euler | 4 |" in table and "| heun | 8 |" in table
    index = (reports / "index.md").read_text()
    assert "Mean sample norm by solver and NFE." in index
    assert not (reports / "sample-norms" / "table1.md").exists()  # no sweep tables for it


def test_a_plugin_kind_without_a_section_gets_a_labelled_listing_of_its_rows(tmp_path):
    reports = run_plugin_grid(tmp_path, "bare-norms", with_section=False)
    assert sorted(p.name for p in (reports / "bare-norms").iterdir()) == ["rows.csv", "rows.md", "rows.tex"]
    listing = (reports / "bare-norms" / "rows.md").read_text()
    header = listing.splitlines()[2]
    assert header == "| solver | seed | status | nfe | sample_norm |"  # the kind's own columns, not the head's
    assert "No report section is registered for study kind 'bare-norms'" in listing
    csv = pd.read_csv(reports / "bare-norms" / "rows.csv")
    assert len(csv) == 4 and csv["sample_norm"].gt(0).all()
    index = (reports / "index.md").read_text()
    assert "(study kind 'bare-norms')" in index and "nothing is ranked or drawn" in index
    assert "Table 1" not in index and ".png" not in index


def test_the_built_in_kinds_render_through_the_registry():
    for kind in ("sweep", "lte", "inversion"):
        assert kind in REPORT_SECTIONS
        assert type(section_for(kind)).__module__ == f"solverbench.report.{kind}_section"
    assert type(section_for("a-kind-nobody-registered")).__name__ == "PlainSection"


def test_the_plain_listing_knows_every_column_a_row_begins_with():
    """Every column of engine.rows.row_head is either in the title or left out of the listing, so the listing
    shows only what the kind itself wrote (a column added to the head must be added to HEAD_COLUMNS)."""
    grid = parse_grid({"name": "g", "backbones": ["gmm"], "solvers": ["euler"], "nfe": [4]})
    head = row_head(grid, "sweep", "id", grid.backbones[0], grid.solvers[0], grid.guidances[0], 0)
    assert set(head) == HEAD_COLUMNS
