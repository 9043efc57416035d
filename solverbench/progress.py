"""Progress of long work on stderr, fit for where stderr goes.

    progress_bar(total=N, desc="quick", unit="cell", enabled=True, off_terminal="lines")

On a terminal it is a tqdm bar, redrawn in place.  Elsewhere (a log file, a pipe) a redrawn
bar would leave every redraw in the file, so it writes plain lines instead, as ``off_terminal``
says:

- ``"lines"``: one line per finished item, ``quick [12/75] cell euler nfe=5: ok, 1.3 s`` (the
  item named by the last ``set_postfix_str``, timed from the item before);
- ``"total"``: one line when the work ends, ``reference solve (...) of 1024 samples: 12.3 s``,
  for work whose items are too fine to list (the steps of an ODE solve, training epochs);
- ``"none"``: nothing.

Either way the object answers tqdm's calls (``update``, ``set_postfix_str``, ``set_postfix``,
``close``, iteration, ``with``), so a caller has one code path; ``tqdm.write`` lines stay plain
lines in a file.  ``enabled=False`` is silent everywhere.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

from tqdm import tqdm

OFF_TERMINAL = ("lines", "total", "none")


def progress_bar(iterable: Optional[Iterable[Any]] = None, *, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", enabled: bool = True, off_terminal: str = "lines",
                 file: Optional[TextIO] = None, **bar_options: Any) -> Any:
    """A tqdm bar on ``file`` (stderr) where it is a terminal, else ``PlainLines`` as ``off_terminal``
    says (``"none"``: a silent bar).  ``bar_options`` go to tqdm."""
    if off_terminal not in OFF_TERMINAL:
        raise ValueError(f"off_terminal must be one of {', '.join(OFF_TERMINAL)}, got {off_terminal!r}")
    stream = sys.stderr if file is None else file
    if enabled and on_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, **bar_options)
    if enabled and off_terminal != "none":
        return PlainLines(iterable, total=total, desc=desc, unit=unit, file=stream,
                          per_item=off_terminal == "lines")
    return tqdm(iterable, total=total, disable=True)


def on_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class PlainLines:
    """Progress as plain lines, no redraws: with ``per_item``, ``desc [n/total] unit label, seconds`` per
    finished item; else ``desc: label, seconds`` once, when it closes."""

    def __init__(self, iterable: Optional[Iterable[Any]] = None, *, total: Optional[int] = None, desc: str = "",
                 unit: str = "it", file: TextIO, per_item: bool = True):
        self.iterable, self.desc, self.unit, self.file, self.per_item = iterable, desc, unit, file, per_item
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.label, self.closed = total, 0, "", False
        self.opened = self.started = time.perf_counter()  # the work's start, and that of the item under way

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Name the item under way (its line names it), or what the work stands at (the closing line says it)."""
        self.label = text

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **values: Any) -> None:
        values = {**(ordered_dict or {}), **values}
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()))

    def update(self, n: float = 1) -> None:
        """``n`` more items finished (with ``per_item``, one line for them)."""
        if n <= 0:
            return
        self.n += n
        if self.per_item:
            now = time.perf_counter()
            count = f"[{self.n}/{self.total}]" if self.total else f"[{self.n}]"
            self.say(" ".join(part for part in (self.desc, count, self.unit, self.label) if part)
                     + f", {now - self.started:.1f} s")
            self.started, self.label = now, ""

    def close(self) -> None:
        if not self.closed and not self.per_item:
            label = f"{self.label}, " if self.label else ""
            self.say(f"{self.desc}: {label}{time.perf_counter() - self.opened:.1f} s")
        self.closed = True

    def say(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "PlainLines":
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if kind is not None:  # the work failed or was stopped: no line saying how long it took
            self.closed = True
        self.close()
