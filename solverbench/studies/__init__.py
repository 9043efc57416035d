"""The harness's own study kinds, registered on import (through the ``solverbench.plugins`` entry
point, as the built-in solvers are): ``sweep`` (the default), ``lte`` and ``inversion``."""
from solverbench.studies import sweep  # noqa: F401
from solverbench.studies.lte import study  # noqa: F401
from solverbench.studies import inversion  # noqa: F401
