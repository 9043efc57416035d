"""The command line starts without what it does not use: no torch for any help, no image-metric or
model-hub package for `list` (benchmarks/startup_time.py measures the times)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# run `solverbench ARGS` in this process's interpreter, then print the top-level packages it imported
IMPORTED_BY = """
import contextlib, io, json, sys
from solverbench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        status = main(sys.argv[1:])
    except SystemExit as exit:
        status = exit.code
import gc
print(json.dumps({"status": status, "collecting": gc.isenabled(), "packages": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def packages_imported_by(*args: str) -> set[str]:
    """The top-level packages that `solverbench ARGS` imports, run in a fresh process."""
    done = subprocess.run([sys.executable, "-c", IMPORTED_BY, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["status"] in (0, None), (args, outcome["status"], done.stderr[-3000:])
    assert outcome["collecting"], "the garbage collector was left paused"
    return set(outcome["packages"])


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["list", "--help"], ["report", "--help"],
                                  ["compare", "--help"], ["train-backbone", "--help"],
                                  ["train-sidenet", "--help"], ["encode-prompts", "--help"]], ids=" ".join)
def test_help_imports_no_torch(args):
    imported = packages_imported_by(*args)
    assert "solverbench" in imported
    assert "torch" not in imported, f"solverbench {' '.join(args)} imports torch"


def test_importing_the_package_imports_no_torch_until_a_public_name_is_used():
    done = subprocess.run([sys.executable, "-c", "import sys, solverbench; before = 'torch' in sys.modules; "
                           "solverbench.Solver; print(before, 'torch' in sys.modules)"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["False", "True"], done.stderr[-3000:]


def test_list_imports_no_image_metric_or_model_hub_package():
    imported = packages_imported_by("list")
    assert {"solverbench", "solvers", "backbones", "torch"} <= imported  # it did list them
    # nor what only a reference solve (torchdiffeq: scipy) or a FLOP count (triton) needs
    assert not imported & {"torch_fidelity", "cleanfid", "transformers", "diffusers", "scipy", "triton"}, \
        sorted(imported)


def test_a_reader_that_stops_early_gets_no_traceback():
    done = subprocess.run(f"{sys.executable} -m solverbench list | head -1", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.stdout == "solvers:\n" and "Traceback" not in done.stderr, done.stderr[-3000:]
