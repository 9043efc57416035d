"""Progress where stderr is a file: one line per finished cell, no bar redraws; --no-progress: none."""
import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from solverbench.progress import PlainLines, progress_bar

ROOT = Path(__file__).resolve().parents[2]

GRID = textwrap.dedent("""
    name: lines
    backbones: [{name: gmm, params: {preset: gmm64}}]
    solvers: [euler]
    nfe: [2, 4]
    num_samples: 16
    metrics: [trajectory_error]
""")


def run_logged(tmp_path, *options):
    """`solverbench run` of a two-cell grid in a fresh process, stderr into a file; that file's text."""
    (tmp_path / "grid.yaml").write_text(GRID)
    log = tmp_path / "run.log"
    with open(log, "w") as stderr:
        done = subprocess.run([sys.executable, "-m", "solverbench", "run", str(tmp_path / "grid.yaml"), "--results",
                               str(tmp_path / "results"), *options], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=stderr, text=True, timeout=600)
    assert done.returncode == 0, log.read_text()[-3000:]
    return log.read_bytes().decode()


def test_a_run_logged_to_a_file_writes_one_line_per_cell(tmp_path):
    text = run_logged(tmp_path)
    assert "\r" not in text
    lines = text.splitlines()
    cells = [line for line in lines if line.startswith("lines [")]
    assert len(cells) == 2, text
    assert re.fullmatch(r"lines \[1/2\] cell euler nfe=2: ok, \d+\.\d s", cells[0]), cells
    assert re.fullmatch(r"lines \[2/2\] cell euler nfe=4: ok, \d+\.\d s", cells[1]), cells
    # the reference solve, a long step of the first cell, says once how long it took
    assert re.fullmatch(r"reference solve \(dopri5, .*\) of 16 samples: \d+\.\d s", lines[0]), lines
    assert len(lines) == 4 and lines[-1].startswith("2 cells in "), lines  # the summary closes it


def test_no_progress_silences_the_lines(tmp_path):
    text = run_logged(tmp_path, "--no-progress")
    assert "cell euler" not in text and "\r" not in text
    assert text.splitlines() == [f"2 cells in {tmp_path / 'results' / 'lines' / 'results.parquet'}: 2 ok (2 run now)"]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_and_a_file_plain_lines_or_nothing():
    assert not isinstance(progress_bar(total=3, file=Terminal()), PlainLines)
    assert isinstance(progress_bar(total=3, file=io.StringIO()), PlainLines)
    log = io.StringIO()
    for _ in progress_bar(range(3), desc="solve", unit="step", file=log, off_terminal="none"):
        pass
    for _ in progress_bar(range(3), desc="solve", unit="step", file=log, enabled=False):
        pass
    assert log.getvalue() == ""


def test_lines_name_each_item_and_count_them():
    log = io.StringIO()
    bar = progress_bar(total=3, desc="grid", unit="cell", file=log)
    bar.set_postfix_str("euler nfe=2")
    bar.update(1)
    bar.update(2)  # a unit of two cells, unnamed
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"grid \[1/3\] cell euler nfe=2, \d+\.\d s", lines[0])
    assert re.fullmatch(r"grid \[3/3\] cell, \d+\.\d s", lines[1])


def test_a_total_is_one_line_at_the_end_and_none_for_failed_work():
    log = io.StringIO()
    for _ in (bar := progress_bar(range(50), desc="ld3 grid", file=log, off_terminal="total")):
        bar.set_postfix(held_out="0.012")
    assert re.fullmatch(r"ld3 grid: held_out=0.012, \d+\.\d s\n", log.getvalue())
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with progress_bar(total=1000, desc="reference solve", file=log, off_terminal="total") as bar:
            bar.update(10)
            raise KeyboardInterrupt
    assert log.getvalue() == ""


def test_run_help_documents_both(capsys):
    from solverbench.cli import main

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "one line per finished cell" in out and "--no-progress" in out and "a bar" in out
