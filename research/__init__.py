"""Investigations run with the product, not part of it: nothing in solverbench, solvers or backbones imports them
(README.md lists them)."""
