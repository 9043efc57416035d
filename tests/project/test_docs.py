"""The documentation: README and the docs site's pages run as written, the site builds strictly,
and every grid key is documented."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def test_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 250


def test_readme_quick_start_has_the_two_commands():
    block = re.search(r"<!-- quick-start -->(.*?)<!-- /quick-start -->", README.read_text(), flags=re.S).group(1)
    lines = [line for line in block.splitlines() if line.startswith("pip install ")]
    assert len(lines) == 2
    assert any("solverbench run configs/quick.yaml" in line and "solverbench report" in line for line in lines)
    assert any("pytest" in line for line in lines)


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_run(path):
    """Each page's Python blocks run in order, in one namespace, as a reader would paste them."""
    namespace: dict = {}
    for block in blocks(path, "python"):
        exec(compile(block, str(path), "exec"), namespace)


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_examples_parse(path):
    for block in blocks(path, "yaml"):
        yaml.safe_load(block)


def test_readme_grid_example_is_a_valid_grid():
    from solverbench.grid.parse import parse_grid

    (block,) = blocks(README, "yaml")
    grid = parse_grid(yaml.safe_load(block), path=ROOT / "configs" / "mine.yaml")
    assert [s.name for s in grid.solvers] == ["euler", "flow-unipc", "ba"]


def test_every_grid_key_is_documented():
    from solverbench.grid.parse import known_keys
    from solverbench.grid.sections import legacy_settings_keys

    page = (ROOT / "docs" / "grid-files.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", page, flags=re.M))
    missing = set(known_keys()) - set(legacy_settings_keys()) - documented
    assert not missing, f"grid keys missing from docs/grid-files.md: {sorted(missing)}"


def test_site_builds_strictly(tmp_path):
    """mkdocs build --strict: no broken link, anchor, nav entry or API reference."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()


PRODUCT = ["solverbench", "solvers", "backbones", "configs", "benchmarks", "docs", "README.md", "mkdocs.yml"]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".js"}
# the product says what a thing is: not which issue made it, what the work aimed at, or a file outside the repository
WORK_HISTORY = re.compile(r"\bissues?\s*#?\d+|\bthe goal\b|BA_SOLVER|\.\./shared", re.I)


def product_files():
    for name in PRODUCT:
        path = ROOT / name
        yield from [path] if path.is_file() else (p for p in sorted(path.rglob("*")) if p.suffix in TEXT_SUFFIXES)


def test_product_files_speak_of_the_product_not_the_work():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in product_files()
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if WORK_HISTORY.search(line)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs" / "results").glob("*.md") if p.name != "index.md"))
def test_every_results_page_gives_the_command_that_remakes_it(page):
    text = (ROOT / "docs" / "results" / page).read_text()
    commands = re.findall(r"^    (?:OMP_NUM_THREADS=1 )?(?:python|torchrun) (\S+)", text, re.M)
    assert commands, f"docs/results/{page} gives no command that remakes its figures"
    for target in commands:  # a script or module of the repository, as named
        assert target.startswith("-") or (ROOT / target).is_file(), f"docs/results/{page}: no such script {target}"
