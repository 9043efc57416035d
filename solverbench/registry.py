"""Name -> factory registries (solvers, backbones, metrics, feature extractors, study kinds, CLI
commands), and plugin loading.

Built-in solvers and backbones live in the top-level packages ``solvers`` and
``backbones``, the harness's own metrics and study kinds in ``solverbench.metrics`` and
``solverbench.studies``; this bottom layer imports none of them.  They are found through
the ``solverbench.plugins`` entry-point group (declared in pyproject.toml: the modules
whose import registers them), loaded the first time a registry is read; a grid file
(``plugins:``) or the command line (``--plugins``) may load extra plugin files by path,
which register more of any kind.

Commands are found apart, through the ``solverbench.commands`` group (``COMMAND =
"module:function"``, a module that imports without torch): their names are known from the
entry points alone, and a command's module is imported when the command is looked up, so that
``solverbench --help`` and ``solverbench COMMAND --help`` load no solver, backbone or metric.
"""
from __future__ import annotations

import difflib
import gc
import hashlib
import importlib.util
import inspect
import sys
import traceback
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterator

ENTRY_POINT_GROUP = "solverbench.plugins"  # modules that register solvers, backbones, metrics, ... when imported
COMMAND_ENTRY_POINT_GROUP = "solverbench.commands"  # COMMAND -> the function that sets up its parser
PLUGIN_MODULE_PREFIX = "solverbench_plugin_"  # module names of plugin files loaded by path


class UnknownNameError(KeyError):
    """A registry lookup for a name nobody registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class NameClashError(ValueError):
    """Two definitions registered under one name; the message names both, with file and line."""


class Registry:
    """A mapping from names to factories (classes or functions) of one kind; ``load_builtins`` registers
    the built-in ones, and runs before the first lookup.  A name may be declared before its factory is
    imported (``declare``): the factory is imported when the name is first looked up."""

    def __init__(self, kind: str, load_builtins: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._declared: dict[str, Callable[[], Any]] = {}  # name -> what imports its factory
        self._load_builtins = load_builtins or load_builtin_plugins

    def declare(self, name: str, load: Callable[[], Any]) -> None:
        """Make ``name`` known now, its factory ``load()``-ed (and registered) when it is first looked up."""
        if name not in self._entries:
            self._declared[name] = load

    def register(self, name: str) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            known = self._entries.get(name)
            if known is not None and known is not obj and _qualname(known) != _qualname(obj):
                raise NameClashError(
                    f"{self.kind} name {name!r} is already registered by {_shown(known)} ({_where(known)}); "
                    f"{_shown(obj)} ({_where(obj)}) cannot take it: register it under another name"
                )
            self._entries[name] = obj
            try:
                obj.registered_name = name
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def get(self, name: str) -> Any:
        self._load_builtins()
        if name in self._declared and name not in self._entries:
            self.register(name)(self._declared[name]())
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(set(self._entries) | set(self._declared))

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._entries or name in self._declared


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _shown(obj: Any) -> str:
    """The qualified name, without the generated module name of a plugin file (its path is shown apart)."""
    module = getattr(obj, "__module__", "?") or "?"
    name = getattr(obj, "__qualname__", repr(obj))
    return name if module.startswith(PLUGIN_MODULE_PREFIX) else f"{module}.{name}"


def defined_at(obj: Any) -> str:
    """``file, line N`` of a class's or function's definition (a plugin file's path), as far as Python can tell."""
    return _where(obj)


def _where(obj: Any) -> str:
    """``file, line N`` of a class's or function's definition, as far as Python can tell."""
    try:
        path = inspect.getsourcefile(obj) or inspect.getfile(obj)
    except (TypeError, OSError):
        return "defined where Python cannot tell"
    code = getattr(obj, "__code__", None)
    line = code.co_firstlineno if code is not None else None
    if line is None:
        try:
            line = inspect.getsourcelines(obj)[1]
        except (TypeError, OSError, IndexError):
            line = None
    return f"{path}, line {line}" if line else path


_builtins_loaded = False
_commands_loaded = False


def load_builtin_plugins() -> None:
    """Import every module named in the ``solverbench.plugins`` entry-point group, once."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    with importing():
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()


@contextmanager
def importing(freeze: bool = False) -> Iterator[None]:
    """Import with the garbage collector paused; with ``freeze``, freeze what exists afterwards.

    What an import makes (modules, classes, torch's operator tables) lives as long as the process: a
    collection while it is being made frees nothing, yet walks every object torch has made (a third of a
    second of ``solverbench list``).  Frozen, those objects are skipped by later collections too; only the
    command line freezes, since it owns its process (frozen objects that later become cyclic garbage are
    never freed, which a program importing solverbench must not get without asking)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def load_plugin_commands() -> None:
    """Declare the command of every ``solverbench.commands`` entry point under its name, once: its module
    is imported when the command is first looked up (a module that registers it with ``@command``
    registers the same function)."""
    global _commands_loaded
    if _commands_loaded:
        return
    _commands_loaded = True
    for ep in entry_points(group=COMMAND_ENTRY_POINT_GROUP):
        COMMANDS.declare(ep.name, ep.load)


SOLVERS = Registry("solver")
BACKBONES = Registry("backbone")
METRICS = Registry("metric")
FEATURE_EXTRACTORS = Registry("feature extractor")
STUDIES = Registry("study kind")  # a grid's kind: (sweep, lte, ...) -> its Study class
SCHEDULES = Registry("learned schedule")  # a schedule: {name: ...} learned per (backbone, solver, NFE, guidance)
# solverbench COMMAND -> a function that sets up its parser (solverbench.cli): the harness's own, and those of
# the solverbench.commands entry points
COMMANDS = Registry("command", load_plugin_commands)

register_solver = SOLVERS.register
register_backbone = BACKBONES.register
register_metric = METRICS.register
register_feature_extractor = FEATURE_EXTRACTORS.register
register_study = STUDIES.register
register_command = COMMANDS.register
register_schedule = SCHEDULES.register


class PluginError(ValueError):
    """A plugin file that cannot be imported: a syntax error, or an exception while it runs.

    The message is one line naming the file and the line at fault.  A ValueError, like a
    bad value in a grid file (which names its plugins)."""


def load_plugin_file(path: str | Path) -> None:
    """Import a Python file so that its ``register_*`` decorators run.

    The module name is derived from the file's resolved path, so loading the same file
    twice is a no-op and two plugin files with the same base name do not collide.  A
    syntax error or an exception raised while the file runs (a name clash included) is a
    ``PluginError`` naming the file and line.
    """
    path = Path(path).resolve()
    if path.is_dir():
        raise PluginError(f"plugin file {str(path)!r} is a folder; give the Python file to load")
    if not path.is_file():
        raise FileNotFoundError(f"plugin file {str(path)!r} does not exist")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"{PLUGIN_MODULE_PREFIX}{path.stem}_{digest}"
    if module_name in sys.modules:
        return
    load_builtin_plugins()
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise PluginError(_plugin_failure(path, err)) from err


def _plugin_failure(path: Path, err: Exception) -> str:
    """One line: which file, which line, what went wrong."""
    message = " ".join(str(err).split())  # one line
    if isinstance(err, SyntaxError) and err.filename and Path(err.filename).resolve() == path:
        return f"plugin file {str(path)!r} has a syntax error at line {err.lineno}: {err.msg}"
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if Path(f.filename).resolve() == path]
    where = f" at line {own[-1].lineno}" if own else ""
    if isinstance(err, NameClashError):  # its message names both definitions already
        return f"plugin file {str(path)!r}{where.replace(' at', ',')}: {message}"
    deeper = frames[-1] if frames and own and frames[-1] is not own[-1] else None
    inside = f" (in {deeper.filename}, line {deeper.lineno})" if deeper is not None else ""
    if isinstance(err, SyntaxError):  # in a module the plugin imports
        inside = f" (syntax error in {err.filename}, line {err.lineno})"
        message = err.msg
    return f"plugin file {str(path)!r} raised {type(err).__name__}{where} while being imported{inside}: {message}"
