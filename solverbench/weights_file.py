"""Reading a weights file safely: ``torch.load(weights_only=True)`` with one clear line per failure.

Every checkpoint the harness or a plugin reads goes through ``read_weights``: tensors and
plain containers only (no code runs while a file is read), on the CPU.  A missing file, a
folder, an empty file, a pickled module (``torch.save(model)`` instead of
``torch.save(model.state_dict())``), a file torch.save did not write (or one cut short) and any
other unreadable file each raise one line that names the file.
"""
from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch


SHOWN_KEYS = 5  # how many offending keys an error message lists


def first_keys(keys: Iterable[Any]) -> str:
    """The first few ``keys`` for an error message, with how many more there are."""
    keys = list(keys)
    shown = ", ".join(str(k) for k in keys[:SHOWN_KEYS])
    return shown + (f" (and {len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def state_dict_mismatches(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> list[str]:
    """How ``state`` fails to fit a module whose state dict is ``expected``: missing keys, unexpected
    keys and shape mismatches, each as one phrase naming the first keys ([] where it fits)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
                 for k in expected if k in state and state[k].shape != expected[k].shape]
    return [f"{what}: {first_keys(keys)}" for what, keys in
            (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", misshapen)) if keys]


class WeightsFileError(ValueError):
    """A weights file that is missing, a folder, empty or not readable with ``weights_only=True``.

    A ValueError: the path is a bad parameter value (a grid naming it fails validation)."""


_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_weights(path: str | Path, *, what: str = "checkpoint file", safe_globals: Iterable[Any] = (),
                 error: type[Exception] = WeightsFileError) -> Any:
    """The object stored in ``path``, loaded on the CPU with ``weights_only=True``.

    ``what`` names the file in messages (``"backbone checkpoint"``); ``safe_globals`` are
    extra classes the file may hold (e.g. ``argparse.Namespace``); failures raise ``error``
    (a subclass of ValueError by default) with a one-line message.
    """
    path = Path(path)
    name = f"{what} {str(path)!r}"
    if path.is_dir():
        raise error(f"{name} is a folder, not a file; give the checkpoint file inside it")
    if not path.exists():
        raise error(f"{name} does not exist")
    if path.stat().st_size == 0:
        raise error(f"{name} is empty (0 bytes): a save that never finished? Write it again")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types; all mean the same to a user
        raise error(f"{name} {_why_unreadable(path, err)}") from err


def _why_unreadable(path: Path, err: Exception) -> str:
    found = _GLOBAL.search(str(err))
    if found:
        cls = found.group(1)
        if _holds_a_module(path):
            return (f"holds a pickled module ({cls}), which weights_only=True does not load: save "
                    "`model.state_dict()` instead (torch.save(model.state_dict(), path))")
        return (f"holds a pickled {cls} object, which weights_only=True does not load: store only tensors "
                "and plain containers (dict, list, numbers, strings), e.g. `model.state_dict()`")
    if not _written_by_torch_save(path):
        return ("is not a file torch.save wrote (neither its zip archive nor its older pickle format), or one cut "
                "short: a download or copy that did not finish? Write it again")
    return f"cannot be read with weights_only=True: {_first_line(err)}"


_LEGACY_HEADER = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # torch.save's older format: its magic number, pickled


def _written_by_torch_save(path: Path) -> bool:
    """Whether the file is in a format torch.save writes: a whole zip archive, or the older pickle format."""
    try:
        if zipfile.is_zipfile(path):
            return True
        with open(path, "rb") as f:
            return f.read(len(_LEGACY_HEADER)) == _LEGACY_HEADER
    except OSError:
        return False


def _holds_a_module(path: Path) -> bool:
    """Whether the pickle inside a torch zip file looks like an ``nn.Module`` (read, never run)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pickled is None:
                return False
            strings = {arg for op, arg, _ in pickletools.genops(archive.read(pickled)) if isinstance(arg, str)}
    except Exception:
        return False
    return {"_modules", "_parameters"} <= strings


def _first_line(err: Exception) -> str:
    """The gist of a torch.load error in one sentence (its messages run to paragraphs)."""
    text = _ANSI.sub("", str(err))
    text = text.split("WeightsUnpickler error:", 1)[-1]  # past the generic weights_only preamble
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(err).__name__
    return line.split(". ", 1)[0].rstrip(".")
