"""solverbench: compare ODE solvers for flow-matching generative models.

The public names below are imported from their modules on first use (a module ``__getattr__``),
so that ``import solverbench`` costs nothing: the command line's ``--help`` imports no torch.
``solverbench.NAME`` of a submodule (``solverbench.registry``) imports that submodule.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
PUBLIC_NAMES = {
    "Backbone": "solverbench.backbone",
    "resolve_backbone": "solverbench.backbone",
    "VelocityField": "solverbench.field",
    "Guidance": "solverbench.guidance",
    "Plan": "solverbench.plan",
    "make_plan": "solverbench.plan",
    "Solver": "solverbench.solver",
    "PrepareContext": "solverbench.solver",
    "get_solver": "solverbench.solver",
    "SampleResult": "solverbench.sampling",
    "sample": "solverbench.sampling",
    "invert": "solverbench.inversion",
    "InversionResult": "solverbench.inversion",
    "NotInvertible": "solverbench.inversion",
    "make_time_grid": "solverbench.timegrid",
    **{name: "solverbench.registry" for name in (
        "register_solver", "register_backbone", "register_metric", "register_feature_extractor", "register_study",
        "register_command", "load_plugin_file", "FEATURE_EXTRACTORS", "SOLVERS", "BACKBONES", "METRICS", "STUDIES",
        "COMMANDS")},
}

__all__ = list(PUBLIC_NAMES)


def __getattr__(name: str) -> Any:
    module = PUBLIC_NAMES.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups find it without this function
        return value
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
