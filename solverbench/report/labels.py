"""Solver labels as the report shows them: file parameters by file name, where that stays unambiguous.

``ba(rule=lobatto, nodes=2, checkpoint=../solvers/ba/checkpoints/digits.pt)`` becomes
``ba(rule=lobatto, nodes=2, checkpoint=digits.pt)``, unless two different paths of the
report share a file name (two ``digits.pt`` in different folders): then every label is kept
whole.  The stored results keep the full labels.
"""
from __future__ import annotations

import re

import pandas as pd

PATH_VALUE = re.compile(r"(?P<key>\w+)=(?P<folders>[^,()=]*/)(?P<name>[^,()/=]+)")


def shorter_labels(labels: pd.Series) -> pd.Series:
    paths = {m["folders"] + m["name"] for label in labels.unique() for m in PATH_VALUE.finditer(label)}
    names = [path.rsplit("/", 1)[-1] for path in paths]
    if len(set(names)) < len(names):
        return labels
    return labels.map(lambda label: PATH_VALUE.sub(r"\g<key>=\g<name>", label))
