"""Name -> factory registries for solvers, backbones and metrics, and plugin loading.

Built-in solvers and backbones live in the top-level packages ``solvers`` and
``backbones``; the harness never imports them by name.  They are found through the
``solverbench.plugins`` entry-point group (declared in pyproject.toml), loaded the first
time a registry is read, and a grid file may load extra plugin files by path.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

ENTRY_POINT_GROUP = "solverbench.plugins"


class UnknownNameError(KeyError):
    """A registry lookup for a name nobody registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry:
    """A mapping from names to factories (classes or functions) of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            known = self._entries.get(name)
            if known is not None and known is not obj and _qualname(known) != _qualname(obj):
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered by {_qualname(known)}; "
                    f"{_qualname(obj)} cannot take it"
                )
            self._entries[name] = obj
            try:
                obj.registered_name = name
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def get(self, name: str) -> Any:
        load_builtin_plugins()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        load_builtin_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        load_builtin_plugins()
        return name in self._entries


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


SOLVERS = Registry("solver")
BACKBONES = Registry("backbone")
METRICS = Registry("metric")
FEATURE_EXTRACTORS = Registry("feature extractor")

register_solver = SOLVERS.register
register_backbone = BACKBONES.register
register_metric = METRICS.register
register_feature_extractor = FEATURE_EXTRACTORS.register

_builtins_loaded = False


def load_builtin_plugins() -> None:
    """Import every module named in the ``solverbench.plugins`` entry-point group, once."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    import solverbench.metrics  # noqa: F401  (the harness's own metrics)

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def load_plugin_file(path: str | Path) -> None:
    """Import a Python file so that its ``register_*`` decorators run.

    The module name is derived from the file's resolved path, so loading the same file
    twice is a no-op and two plugin files with the same base name do not collide.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"plugin file {str(path)!r} does not exist")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"solverbench_plugin_{path.stem}_{digest}"
    if module_name in sys.modules:
        return
    load_builtin_plugins()
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        raise
