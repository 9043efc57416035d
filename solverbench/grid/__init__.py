"""Grid files: read, checked section by section before any work, into one frozen ``Grid``."""
from solverbench.errors import GridError
from solverbench.grid.parse import load_grid, parse_grid
from solverbench.grid.values import BackboneSpec, Grid, SolverSpec

__all__ = ["GridError", "Grid", "BackboneSpec", "SolverSpec", "load_grid", "parse_grid"]
