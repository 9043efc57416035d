"""Stable short hashes of JSON-able specs and of files' bytes, for cache keys and cell ids."""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """Sorted-key JSON; mapping keys become strings first, as JSON writes them (so keys of mixed
    types, ``{5: ..., "default": ...}``, sort)."""
    return json.dumps(_string_keys(obj), sort_keys=True, separators=(",", ":"), default=str)


def _string_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else json.dumps(k) if isinstance(k, (int, float, bool)) or k is None
                else str(k): _string_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_string_keys(v) for v in obj]
    return obj


def spec_hash(obj: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (cached per path, size and modification time)."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
