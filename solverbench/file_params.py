"""Parameters that name files (a backbone's or solver's ``path_params``).

In a grid file they are read next to the grid file, as plugins are, and the bytes of the
files they name are part of a cell's identity: replacing a checkpoint by another one under
the same name makes its cells run again instead of being skipped as done.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from solverbench.hashing import file_sha256


def resolve_paths(base: Path, owner: type, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the relative paths among ``owner.path_params`` put under ``base``."""
    resolved = dict(params)
    for key in getattr(owner, "path_params", ()):
        value = resolved.get(key)
        if isinstance(value, (str, Path)) and not Path(value).expanduser().is_absolute():
            resolved[key] = str(base / value)
    return resolved


def file_digests(base: Path, owner: type, params: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of each regular file that ``owner``'s path parameters name (folders are left out)."""
    resolved = resolve_paths(base, owner, params)
    return {key: file_sha256(resolved[key]) for key in getattr(owner, "path_params", ())
            if isinstance(resolved.get(key), (str, Path)) and Path(resolved[key]).expanduser().is_file()}
