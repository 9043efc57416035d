"""The installed diffusers, as the family reaches it: the package, its scheduler classes and their configs, and
``Refused``, the one-line reason a scheduler or a config of it cannot sample a flow-matching model here."""
from __future__ import annotations

import difflib
import inspect
import warnings
from contextlib import contextmanager
from typing import Iterator


class Refused(ValueError):
    """The scheduler (or this config of it) cannot sample a flow-matching model here; ``str`` says why."""


def diffusers_module():
    import diffusers

    return diffusers


@contextmanager
def quiet_diffusers() -> Iterator[None]:
    """diffusers' logger at errors only, and no DeprecationWarnings from its numpy calls: some schedulers warn
    on every ``set_timesteps`` that they changed their own config (DPMSolverSinglestep's lower_order_final)."""
    logging = diffusers_module().utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logging.set_verbosity(level)


def scheduler_names() -> list[str]:
    """The scheduler classes this diffusers exports (Flax ones left out)."""
    return sorted(n for n in dir(diffusers_module()) if n.endswith("Scheduler") and not n.startswith("Flax"))


def scheduler_class(name: str) -> type:
    diffusers = diffusers_module()
    cls = getattr(diffusers, name, None) if isinstance(name, str) and name.endswith("Scheduler") else None
    if not (inspect.isclass(cls) and issubclass(cls, diffusers.SchedulerMixin)):
        close = difflib.get_close_matches(str(name), scheduler_names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise Refused(f"diffusers {diffusers.__version__} has no scheduler class {name!r}{hint}")
    return cls


def config_keys(cls: type) -> list[str]:
    """The keywords of the scheduler's ``__init__``: its config."""
    return [p.name for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def set_timesteps_takes(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.set_timesteps).parameters
