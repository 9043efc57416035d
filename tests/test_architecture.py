"""The architecture stays as designed: the import contracts of pyproject.toml hold (layers, no
cycles), and the harness names no particular solver."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    """solvers/ and backbones/ above solverbench/, solverbench's own layers, no import cycles anywhere, and
    research/ imported by none of them."""
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert linter, "import-linter is a test dependency (pyproject's test extra)"
    done = subprocess.run([linter, "pyproject.toml", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 kept, 0 broken" in done.stdout


def harness_sources():
    return [p for p in (ROOT / "solverbench").rglob("*.py")]


def test_the_harness_names_no_solver_family():
    mentions = [f"{p.relative_to(ROOT)}:{i}" for p in harness_sources()
                for i, line in enumerate(p.read_text().splitlines(), 1) if re.search("sidenet", line, re.I)]
    assert not mentions, f"the harness names the BA-solver's SideNet at {mentions}"


@pytest.mark.parametrize("pattern", [r"""(SOLVERS\.get|get_solver)\(\s*["']""", r"""STUDIES\.get\(\s*["']"""])
def test_the_harness_looks_up_no_solver_or_study_by_a_name_of_its_own(pattern):
    found = [f"{p.relative_to(ROOT)}:{i}" for p in harness_sources()
             for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, line)]
    assert not found, found
