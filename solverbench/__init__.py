"""solverbench: compare ODE solvers for flow-matching generative models."""
from solverbench.backbone import Backbone, resolve_backbone
from solverbench.field import VelocityField
from solverbench.guidance import Guidance
from solverbench.plan import Plan, make_plan
from solverbench.registry import (
    BACKBONES,
    COMMANDS,
    FEATURE_EXTRACTORS,
    METRICS,
    SOLVERS,
    STUDIES,
    load_plugin_file,
    register_backbone,
    register_command,
    register_feature_extractor,
    register_metric,
    register_solver,
    register_study,
)
from solverbench.inversion import InversionResult, NotInvertible, invert
from solverbench.sampling import SampleResult, sample
from solverbench.solver import PrepareContext, Solver, get_solver
from solverbench.timegrid import make_time_grid

__version__ = "0.1.0"

__all__ = [
    "Backbone", "VelocityField", "Guidance", "Plan", "make_plan", "Solver", "PrepareContext", "SampleResult",
    "sample", "invert", "InversionResult", "NotInvertible", "get_solver", "resolve_backbone", "make_time_grid", "register_solver", "register_backbone",
    "register_metric", "register_feature_extractor", "register_study", "register_command", "load_plugin_file",
    "FEATURE_EXTRACTORS", "SOLVERS", "BACKBONES", "METRICS", "STUDIES", "COMMANDS",
]
