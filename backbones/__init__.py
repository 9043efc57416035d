"""Built-in backbones, one module or package each.

Importing this package registers none of them: the ``solverbench.plugins`` entry points
(pyproject.toml) name each backbone's module, imported when a registry is first read, so a
module of one backbone imports without the others.
"""
