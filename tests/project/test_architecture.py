"""The architecture stays as designed: the import contracts of pyproject.toml hold (layers, no
cycles), and the harness names no particular solver."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_tests_are_organised_like_the_code():
    """Each test file sits in the folder of what it tests; none at the top of tests/."""
    folders = {"harness", "solvers", "backbones", "report", "benchmarks", "project", "research"}
    tests = ROOT / "tests"
    loose = [p.name for p in tests.glob("test_*.py")]
    strays = [str(p.relative_to(tests)) for p in tests.rglob("test_*.py") if p.parent.name not in folders]
    assert not loose and not strays, loose + strays
