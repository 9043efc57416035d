"""A scheduler class with its config, checked to sample a flow model, and how its grid is set."""
from __future__ import annotations

import functools
from typing import Any, Optional

import numpy as np
import torch

from solverbench.timegrid import make_time_grid
from solvers.diffusers_schedulers.flow import flow_config
from solvers.diffusers_schedulers.library import (Refused, config_keys, quiet_diffusers, scheduler_class,
                                                  scheduler_names, set_timesteps_takes)
from solvers.diffusers_schedulers.probe import probe


@functools.lru_cache(maxsize=None)
def supported_schedulers() -> tuple[str, ...]:
    """The scheduler classes of the installed diffusers that sample a flow model with their default settings."""
    found = []
    for name in scheduler_names():
        try:
            Setting(name, {}, "scheduler", None)
        except Exception:  # refused, or a class this installation cannot even build
            continue
        found.append(name)
    return tuple(found)


class Setting:
    """A scheduler class with its config, checked to sample a flow model: what ``DiffusersScheduler`` runs."""

    def __init__(self, name: str, config: dict[str, Any], grid: str, mu: Optional[float]):
        self.cls = cls = scheduler_class(name)
        keys = config_keys(cls)
        unknown = [k for k in config if k not in keys]
        if unknown:
            raise Refused(f"{name} has no config key {', '.join(map(repr, unknown))}; its keys: {', '.join(keys)}")
        forced = flow_config(cls)
        for key, value in forced.items():
            if key in config and config[key] != value:
                raise Refused(f"{name}: {key}={config[key]!r} contradicts a flow-matching model; the diffusers family "
                              f"sets {key}={value!r} (leave it out)")
        self.name, self.grid, self.mu = name, grid, mu
        self.config = {**config, **forced}
        self.given = {k: v for k, v in config.items() if k not in forced}  # what distinguishes the setting
        dynamic = bool(self.config.get("use_dynamic_shifting", False))
        if dynamic and mu is None:
            raise Refused(f"{name}: use_dynamic_shifting=True needs mu (set_timesteps(mu=...)), e.g. Flux's "
                          "calculate_shift: mu = base_shift + (max_shift - base_shift) (L - 256) / (4096 - 256) for L "
                          "latent tokens")
        if mu is not None and not dynamic:
            raise Refused(f"{name}: mu applies only with use_dynamic_shifting=True")
        if grid == "plan" and not set_timesteps_takes(cls, "sigmas"):
            raise Refused(f"{name}.set_timesteps takes no sigmas, so grid='plan' cannot give it the plan's times; "
                          "use grid='scheduler' (its own sigmas)")
        self.described = name + ("(" + ", ".join(f"{k}={v!r}" for k, v in self.config.items()) + ")" if self.config
                                 else "")
        with quiet_diffusers():
            self.spending = probe(self.described, self.build, self.set_probe_grid)
            self.resolved = dict(self.build().config)  # the whole config, defaults included

    def build(self) -> Any:
        """A fresh scheduler from the stored config."""
        try:
            return self.cls(**self.config)
        except Exception as err:  # the scheduler's own refusal of its config
            raise Refused(f"{self.described} refuses its config: {type(err).__name__}: "
                          f"{' '.join(str(err).split())}") from None

    def set_timesteps(self, scheduler: Any, steps: int, times: Optional[torch.Tensor], device: Any = None) -> None:
        """``set_timesteps`` for ``steps`` steps: its own sigmas (``times`` None) or ``times`` (ending at 0) as
        its sigmas."""
        extra = {} if self.mu is None else {"mu": self.mu}
        if times is None:
            scheduler.set_timesteps(steps, device=device, **extra)
        else:
            # a numpy array, as pipelines pass them (UniPC computes on it, a list would fail)
            scheduler.set_timesteps(sigmas=times[:-1].detach().cpu().numpy().astype(np.float64), device=device,
                                    **extra)

    def set_probe_grid(self, scheduler: Any, steps: int) -> None:
        self.set_timesteps(scheduler, steps, make_time_grid("uniform", steps) if self.grid == "plan" else None)
