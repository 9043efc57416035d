"""solverbench: compare ODE solvers for flow-matching generative models."""
from solverbench.backbone import Backbone, resolve_backbone
from solverbench.field import VelocityField
from solverbench.registry import (
    BACKBONES,
    FEATURE_EXTRACTORS,
    METRICS,
    SOLVERS,
    load_plugin_file,
    register_backbone,
    register_feature_extractor,
    register_metric,
    register_solver,
)
from solverbench.sampling import SampleResult, sample
from solverbench.solver import Solver, get_solver
from solverbench.timegrid import make_time_grid

__version__ = "0.1.0"

__all__ = [
    "Backbone", "VelocityField", "Solver", "SampleResult", "sample", "get_solver",
    "resolve_backbone", "make_time_grid", "register_solver", "register_backbone",
    "register_metric", "register_feature_extractor", "load_plugin_file", "FEATURE_EXTRACTORS", "SOLVERS", "BACKBONES", "METRICS",
]
