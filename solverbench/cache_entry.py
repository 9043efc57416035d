"""Entries of the on-disk caches: written whole, read back, or moved aside and computed again.

Every cache the harness and the solvers keep (reference solves, the networks and time grids
solvers learn, image reference features, trained backbones) and the results store
write a file whole with ``write_atomically`` (``save_atomically`` for a ``torch.save``): a
temporary file ``.<name>.<pid>.tmp`` beside it, renamed over the name, so a reader never sees
half a file.

A cache reads an entry with ``read_entry(path, what, read)``.  An entry that cannot be used
(a folder, empty, truncated, foreign, written for another key than its name says, or not
fitting what it is read for: ``read`` raises) is moved aside to ``<name>.damaged`` (or
``<name>.damaged.1``, ``.2``, ... where that is taken: a file moved aside is never
overwritten), named in one line on stderr, and read as absent: the cache computes it again.
A damaged entry costs its recomputation, never a cell.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from tqdm import tqdm

T = TypeVar("T")
DAMAGED = ".damaged"
GIST_CHARS = 200


class UnfitEntry(ValueError):
    """Raised by an entry's reader: the file reads, but is not the entry its name says (another key, a
    missing field, another shape)."""


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path`` (``.<name>.<pid>.tmp``), then renamed over ``path``
    (its folder made first); the temporary file is removed where ``write`` fails or is interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def temporary_name(path: Path) -> Path:
    """Where ``write_atomically`` writes ``path`` first: concurrent processes never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_atomically(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through ``write_atomically``."""
    import torch

    return write_atomically(path, lambda tmp: torch.save(obj, tmp))


def load_tensors(path: str | Path, fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """A cache file of tensors and plain values (``torch.load`` with ``weights_only=True``, on the CPU, through
    ``solverbench.weights_file``): a mapping holding every name in ``fields`` (else ``UnfitEntry``)."""
    from solverbench.weights_file import read_weights

    stored = read_weights(path, what="cache entry")
    if not isinstance(stored, dict):
        raise UnfitEntry(f"holds a {type(stored).__name__}, not a mapping of tensors")
    missing = [name for name in fields if name not in stored]
    if missing:
        found = ", ".join(map(str, stored)) or "none"
        raise UnfitEntry(f"has no {', '.join(map(repr, missing))} (its fields: {found})")
    return stored


def read_entry(path: str | Path, what: str, read: Callable[[Path], T], *, mend: bool = True) -> Optional[T]:
    """``read(path)``; None where there is no entry, or where it cannot be used (``read`` raises): then,
    with ``mend``, it is moved aside and named in one line on stderr.  Without ``mend`` (a process that
    leaves the cache to another, as torchrun's ranks leave it to rank 0) an unusable entry is only
    read as absent.  ``what`` names the entry in the line (``"cached reference solve"``)."""
    path = Path(path)
    for _ in range(3):  # an entry replaced while it was read is read again
        try:
            before = os.stat(path)
        except FileNotFoundError:
            return None
        why = unusable(path, before)
        if why is None:
            try:
                return read(path)
            except MemoryError:
                raise
            except Exception as err:  # unpickling and checks fail in many types; all mean "compute it again"
                if "out of memory" in str(err).lower():
                    raise
                why = gist(err, path)
        if not mend:
            return None
        if _identity(path) != _identity_of(before):
            continue  # another process wrote (or moved) the entry meanwhile
        aside = move_aside(path, what, why)
        if aside is None:
            continue
        tqdm.write(f"solverbench: warning: {what} {path} cannot be used ({why}); moved it aside to {aside} and "
                   "computing it again", file=sys.stderr)
        return None
    return None


def read_shared_entry(path: str | Path, what: str, read: Callable[[Path], T]) -> Optional[T]:
    """``read_entry`` for the ranks of a torchrun launch (``solverbench.distributed``): rank 0 alone reads the
    entry (and moves a damaged one aside), all ranks learn whether there is one, and the other ranks then read
    rank 0's file.  In one process: ``read_entry``."""
    from solverbench.distributed import world

    ranks = world()
    found: Optional[T] = None

    def look() -> bool:
        nonlocal found
        found = read_entry(path, what, read)
        return found is not None

    if not ranks.decide(look):
        return None
    return found if ranks.main else read(Path(path))


def unusable(path: Path, stat: os.stat_result) -> Optional[str]:
    """Why the file at ``path`` cannot be an entry before it is read (a folder, empty), else None."""
    if os.path.isdir(path):
        return "a folder, not a file"
    if stat.st_size == 0:
        return "empty (0 bytes): a write that never finished"
    return None


def gist(err: BaseException, path: Path) -> str:
    """An error's message on one line, shortened to its first sentence, without the entry's path: what
    follows the path where the message names it, else the error's type and message."""
    text = " ".join(str(err).split())
    for name in (repr(str(path)), str(path)):
        if name in text:
            text = text.split(name, 1)[1].strip()
            break
    else:
        if not isinstance(err, UnfitEntry):
            text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    return first if len(first) <= GIST_CHARS else first[:GIST_CHARS - 3] + "..."


def move_aside(path: Path, what: str, why: str) -> Optional[Path]:
    """Rename ``path`` to the first free ``<name>.damaged[.k]``; None where it is gone already (another
    process moved it).  A move that fails otherwise is one line saying what to do."""
    for k in range(1000):
        aside = path.with_name(path.name + DAMAGED + (f".{k}" if k else ""))
        if os.path.lexists(aside):
            continue
        try:
            _rename_without_overwriting(path, aside)
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
        except OSError as err:
            raise ValueError(f"{what} {path} cannot be used ({why}) and cannot be moved aside "
                             f"({err.strerror or err}); move or delete it, and run again") from None
        return aside
    raise ValueError(f"{what} {path} cannot be used ({why}) and {path.name}{DAMAGED}.* are all taken; "
                     "delete the moved-aside files, and run again")


def _rename_without_overwriting(path: Path, target: Path) -> None:
    """Rename ``path`` to ``target``, failing (FileExistsError) where ``target`` exists: a hard link, then
    the old name removed; a plain rename where links cannot be made (a folder, a file system without them)."""
    try:
        os.link(path, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        if not os.path.lexists(path):
            raise FileNotFoundError(path) from None
        os.rename(path, target)
        return
    os.unlink(path)


def _identity(path: Path) -> Optional[tuple[int, int, int, int]]:
    try:
        return _identity_of(os.stat(path))
    except FileNotFoundError:
        return None


def _identity_of(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns
