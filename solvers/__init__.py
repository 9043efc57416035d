"""Built-in solvers, one module or package per family.

Importing this package registers none of them: the ``solverbench.plugins`` entry points
(pyproject.toml) name each family's module, imported when a registry is first read, so a
module of one family imports without the others.
"""
