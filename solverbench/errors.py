"""Errors every layer raises, in a module of their own so that none has to import another to raise them."""
from __future__ import annotations

from typing import Any, NoReturn


class GridError(ValueError):
    """A grid file that cannot run; the message names the key, the value and what is allowed."""


def grid_error(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise the one-line GridError of a bad value under ``key``."""
    raise GridError(f"grid key {key!r}: bad value {value!r}; {allowed}")
