"""The README's Python examples run as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run():
    blocks = python_blocks()
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_quick_start_has_the_two_commands():
    block = re.search(r"<!-- quick-start -->(.*?)<!-- /quick-start -->", README.read_text(), flags=re.S).group(1)
    lines = [l for l in block.splitlines() if l.startswith("pip install ")]
    assert len(lines) == 2
    assert any("solverbench run configs/quick.yaml" in l and "solverbench report" in l for l in lines)
    assert any("pytest" in l for l in lines)
