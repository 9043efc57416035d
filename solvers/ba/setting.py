"""A setting: a dataclass field that carries its default, what it means and what its value must be.

``setting(default, meaning, check)`` declares one; ``check_fields(instance, what)`` checks every field
of a dataclass instance against its ``Check`` (``check_value``: one value) and raises one line naming the
first bad one
(``SideNet setting 'lr' must be a positive number, got -5.0``); ``meaning_of`` and ``check_of`` read
them back for help texts and command-line options.  Plain Python: no torch.
"""
from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from typing import Any, Callable, Optional


@dataclass(frozen=True)
class Check:
    """What a value must be: ``accepts(value)``, said as ``must {must}``; ``choices``: the allowed
    values, where they are a list (command-line options offer them)."""

    must: str
    accepts: Callable[[Any], bool]
    choices: Optional[tuple[Any, ...]] = None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


POSITIVE_INTEGER = Check("be a positive integer", lambda v: is_integer(v) and v >= 1)
PATH_OR_EMPTY = Check("be the path of a SideNet checkpoint (or empty)", lambda v: isinstance(v, str))


def non_negative_integer(note: str = "") -> Check:
    return Check(f"be a non-negative integer{note}", lambda v: is_integer(v) and v >= 0)


def positive_number(note: str = "") -> Check:
    return Check(f"be a positive number{note}", lambda v: is_number(v) and v > 0)


def at_least(low: float, must: str) -> Check:
    return Check(must, lambda v: is_number(v) and v >= low)


def within(low: float, high: float, *, closed: bool = False) -> Check:
    """``[low, high)``, or ``[low, high]`` where ``closed``."""
    return Check(f"lie in [{low}, {high}{']' if closed else ')'}",
                 lambda v: is_number(v) and low <= v and (v <= high if closed else v < high))


def one_of(*values: Any, must: Optional[str] = None) -> Check:
    return Check(must or f"be one of {', '.join(map(str, values))}", lambda v: v in values, values)


def setting(default: Any, meaning: str, check: Check, *, everyday: bool = False) -> Any:
    """A dataclass field for a setting: its default, what it means (help texts), what it must be;
    ``everyday``: one a user commonly sets (the short description lists it)."""
    return field(default=default, metadata={"meaning": meaning, "check": check, "everyday": everyday})


def meaning_of(f: Field) -> str:
    return f.metadata["meaning"]


def check_of(f: Field) -> Check:
    return f.metadata["check"]


def is_everyday(f: Field) -> bool:
    return f.metadata["everyday"]


def check_value(f: Field, value: Any, what: str) -> None:
    """``value`` against the check of the setting ``f`` (ValueError, one line: ``{what} 'name' must ...``)."""
    check = check_of(f)
    if not check.accepts(value):
        raise ValueError(f"{what} {f.name!r} must {check.must}, got {value!r}")


def check_fields(instance: Any, what: str) -> None:
    """Each field of the dataclass ``instance`` against its check, in order."""
    for f in fields(instance):
        check_value(f, getattr(instance, f.name), what)
