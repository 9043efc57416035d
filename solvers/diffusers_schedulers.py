"""``diffusers``: diffusers' schedulers as they ship, sampling a flow-matching model.

``diffusers(scheduler=NAME, **config)`` builds the diffusers scheduler class ``NAME`` with
``config`` (any keyword of its ``__init__``, passed through unchanged: ``shift``,
``use_dynamic_shifting``, ``use_karras_sigmas``, ``solver_order``, ``solver_type``,
``algorithm_type``, ``flow_shift``, ...) and runs its sampling loop, every model call going
through ``field(x, t)`` (one NFE; guidance is the field's business): for each of
``scheduler.timesteps``, ``v = field(x, t_of_sigma(sigma_i))`` then
``x = scheduler.step(v, timestep_i, x)``.  A fresh scheduler is built from the stored
config for every solve (schedulers are stateful; DPM-Solver's ``set_timesteps(mu=...)``
even rewrites its config).

Time mapping.  A flow-matching scheduler's sigma is our time: ``x_sigma = (1 - sigma) x0
+ sigma noise`` and the model output it expects is the velocity ``noise - x0``, so the
model is evaluated at ``t = sigma`` (``t_of_sigma``, the one place the mapping is written).
Never ``timestep / num_train_timesteps``: DPM-Solver's and UniPC's timesteps are rounded to
integers.  The noise given is the state at t = 1; the scheduler starts at its own first
sigma (1.0 for FlowMatchEuler/Heun and FlowMapEuler, 0.999 for DPM-Solver's flow sigmas,
1 - 1e-6 for UniPC's), and the noise is used as the state there, as diffusers' pipelines do.

Which schedulers.  One that samples a flow-matching model: a ``Flow*`` scheduler (flow
sigmas and velocity output by construction), or one whose config has ``use_flow_sigmas``
and ``prediction_type``, which this family sets to ``True`` and ``"flow_prediction"`` (a
contradicting value given is refused).  Others (DDIM, EulerDiscrete, LMSDiscrete, ...)
are refused: their model output is a VP/VE diffusion's epsilon, v or x0.  The constructor
then runs the scheduler on a small analytic problem (a probe of a few steps) and refuses,
in one line saying why, a setting whose sigmas are not a flow grid ending at 0 (DEIS and
SA-Solver repeat their last flow sigma instead of ending at 0, so their last state is not
a sample; DPM-Solver's karras/exponential/beta sigmas are VP sigmas > 1), whose samples are
not finite (UniPC bh1: its last step to sigma = 0 computes B(h) * 0 = inf * 0), or that is
stochastic (sde-dpmsolver++, stochastic_sampling, FlowMatchLCM).  With diffusers 0.42.1
this leaves DPMSolverMultistep, DPMSolverSinglestep, FlowMapEulerDiscrete,
FlowMatchEulerDiscrete, FlowMatchHeunDiscrete and UniPCMultistep (``supported_schedulers()``).

NFE.  The plan's number of intervals N is ``num_inference_steps``; the scheduler spends
``len(scheduler.timesteps)`` evaluations on it, measured by the probe:

- FlowMatchEuler, FlowMapEuler, DPMSolverMultistep/Singlestep, UniPC: one per step, N in
  all (UniPC's corrector reuses the next step's evaluation; no evaluation at sigma = 0);
  ``stages = 1``;
- FlowMatchHeun: two per step (Euler, then the trapezoidal correction at the step's end)
  except its last, an Euler step to sigma = 0: 2N - 1.  ``stages = 2, partial_stages = (1,)``
  makes the odd budgets' plans; an even budget, whose plan would end on a two-stage
  interval, is refused in ``solve`` before any evaluation (``make_plan`` cannot refuse it).

Grid.  ``grid="scheduler"`` (default): the scheduler samples on its own sigmas,
``set_timesteps(N, mu=...)``, with its shift/karras/... settings, as a pipeline that passes
no sigmas does (SD3's); the plan's times must then be the uniform grid (another schedule
or an explicit time grid would be ignored, so it is refused).  Those sigmas are not the
uniform grid: FlowMatchEuler/Heun take ``linspace(1, 1/1000, N)`` then 0 (so the last
step, from 1/1000 to 0, is tiny; with ``shift`` s the 1/1000 is shifted twice, once in
``__init__`` and once in ``set_timesteps``: 0.0089 for s = 3), DPM-Solver
``linspace(0.999, 0.999/N, N)`` then 0, UniPC ``linspace(1, 1/1000, N + 1)[:-1]`` then 0.
``grid="plan"``: the plan's times are handed to ``set_timesteps(sigmas=times[:-1])`` (the
scheduler appends sigma = 0, so the plan must end at 0), for schedulers that take
``sigmas`` (FlowMatchEuler, FlowMapEuler, UniPC; refused for the others), so a learned
time grid can be used.  The scheduler treats those sigmas as ``set_timesteps`` does: it
shifts them by its ``shift``/``flow_shift`` or dynamic shift (leave those at their
defaults to sample exactly on the plan's times, up to the float32 rounding of
FlowMatchEuler's and UniPC's sigmas; UniPC also moves a first sigma of 1 to 1 - 1e-6);
with ``use_dynamic_shifting`` and a uniform plan this is the Flux pipeline's grid (it
passes ``sigmas = linspace(1, 1/N, N)``).

Precision.  diffusers keeps most sigmas in float32; for a float64 state they are upcast to
float64 (same values) after ``set_timesteps``, as the parity tests do; for a float32 state
they stay as shipped.  FlowMatchEuler, FlowMatchHeun and DPMSolverMultistep cast the
sample to float32 inside ``step``, so they compute in float32 whatever the state's dtype
(a float64 state is rounded to float32 each step and the result cast back to float64);
UniPC and DPMSolverSinglestep compute in the state's dtype (float64 with a float64 state);
FlowMapEuler keeps float64 sigmas, steps in float64 and casts to the state's dtype.

Pipeline defaults (diffusers 0.42.1; the scheduler configs themselves are on the Hub, not
in the package).  SD3 (``pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py``):
FlowMatchEulerDiscreteScheduler with ``shift=3.0`` and no sigmas passed, i.e.
``diffusers(scheduler=FlowMatchEulerDiscreteScheduler, shift=3.0)``.  Flux
(``pipelines/flux/pipeline_flux.py``): FlowMatchEulerDiscreteScheduler with
``use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
max_image_seq_len=4096``, ``sigmas = linspace(1, 1/N, N)`` and ``mu = calculate_shift(L)
= base_shift + (max_shift - base_shift) (L - 256) / (4096 - 256)`` for L latent tokens
(4096 at 1024 x 1024: mu = 1.15), i.e. ``diffusers(scheduler=FlowMatchEulerDiscreteScheduler,
use_dynamic_shifting=True, mu=1.15, grid="plan")`` on the uniform schedule.

No exact-history step: a scheduler runs only along a whole grid to sigma = 0, so
``local_step`` (the LTE study) raises ``NoExactHistoryStep``.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import math
import typing
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from solverbench import register_solver
from solverbench.field import VelocityField
from solverbench.plan import Plan
from solverbench.solver import NoExactHistoryStep, Solver
from solverbench.timegrid import make_time_grid

GRIDS = ("scheduler", "plan")
FLOW_CONFIG = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}  # set for non-Flow* schedulers
PROBE_STEPS = (3, 4)  # the probe's num_inference_steps: enough to tell one evaluation per step from Heun's 2N - 1


def t_of_sigma(sigma: Any) -> float:
    """Our time of a flow-matching scheduler's sigma: ``t = sigma``.

    diffusers' flow schedulers interpolate ``x = (1 - sigma) x0 + sigma noise`` and step with
    the velocity ``noise - x0``, exactly our ``x_t`` and ``v`` at ``t = sigma``.  Their
    ``timestep`` is ``sigma * num_train_timesteps``, rounded to an integer by DPM-Solver
    and UniPC, so it is never used for the time.
    """
    return float(sigma)


class Refused(ValueError):
    """The scheduler (or this config of it) cannot sample a flow-matching model here; ``str`` says why."""


@dataclass(frozen=True)
class Spending:
    """What the scheduler evaluates on N steps: ``stages`` per step, ``last`` on its final one."""

    stages: int
    last: int

    def of(self, steps: int) -> tuple[int, ...]:
        return (self.stages,) * (steps - 1) + (self.last,)


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


def flow_config(cls: type) -> dict[str, Any]:
    """What makes ``cls`` sample a flow model: ``{}`` for a ``Flow*`` scheduler (flow by construction),
    ``FLOW_CONFIG`` for one with ``use_flow_sigmas`` and a ``flow_prediction`` prediction type;
    ``Refused`` otherwise."""
    name = cls.__name__
    if name.startswith("Flow"):
        return {}
    keys = inspect.signature(cls.__init__).parameters
    if "use_flow_sigmas" not in keys or "prediction_type" not in keys:
        raise Refused(f"{name} cannot sample a flow-matching model: it has no flow sigmas (no use_flow_sigmas in its "
                      "config) and is no FlowMatch scheduler, so its model output is a diffusion model's epsilon, v "
                      "or x0, not a velocity")
    allowed = typing.get_args(keys["prediction_type"].annotation)
    if allowed and "flow_prediction" not in allowed:
        raise Refused(f"{name} cannot sample a flow-matching model: its prediction_type takes {', '.join(allowed)}, "
                      "not flow_prediction")
    return dict(FLOW_CONFIG)


def probe_state() -> torch.Tensor:
    return torch.linspace(-1.5, 1.5, 32, dtype=torch.float32).reshape(2, 4, 2, 2)


def probe_velocity(x: torch.Tensor, t: float) -> torch.Tensor:
    """A smooth stand-in for a flow model's velocity (any will do: the probe checks grids and counts)."""
    return torch.tanh(x) * (1 + t) - 0.5 * x + 0.2


def run_scheduler(scheduler: Any, velocity: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor
                  ) -> torch.Tensor:
    """The scheduler's sampling loop from ``x`` at its first sigma, the model evaluated at ``t_of_sigma``."""
    scheduler.set_begin_index(0)
    for i, timestep in enumerate(scheduler.timesteps):
        x = scheduler.step(velocity(x, t_of_sigma(scheduler.sigmas[i])), timestep, x, return_dict=False)[0]
    return x


def check_flow_grid(name: str, scheduler: Any, steps: int) -> int:
    """The number of steps (distinct sigma intervals) of a scheduler set for ``steps``; ``Refused`` unless its
    sigmas pair with its timesteps and run down from at most 1 to exactly 0."""
    sigmas = [float(s) for s in scheduler.sigmas]
    if len(sigmas) != len(scheduler.timesteps) + 1:
        raise Refused(f"{name} cannot sample a flow-matching model: it sets {len(sigmas)} sigmas for "
                      f"{len(scheduler.timesteps)} timesteps, not one more, so where it evaluates the model is unknown")
    if max(sigmas) > 1 + 1e-6 or min(sigmas) < 0:
        raise Refused(f"{name} cannot sample a flow-matching model: its sigmas run from {max(sigmas):.4g} to "
                      f"{min(sigmas):.4g}, outside [0, 1], so they are no flow times t = sigma")
    if any(b > a for a, b in zip(sigmas, sigmas[1:])):
        raise Refused(f"{name} cannot sample a flow-matching model: its sigmas do not decrease (it does not run "
                      "from noise to data)")
    if sigmas[-1] != 0:
        raise Refused(f"{name} cannot sample a flow-matching model: its sigmas end at {sigmas[-1]:.4g} (for {steps} "
                      "steps), not at 0, so its last state is not a sample")
    return sum(1 for a, b in zip(sigmas, sigmas[1:]) if b < a)


def spending_of(name: str, evaluations: dict[int, int]) -> Spending:
    """One evaluation per step (N on N steps) or Heun's two per step but one on the last (2N - 1)."""
    if all(e == n for n, e in evaluations.items()):
        return Spending(1, 1)
    if all(e == 2 * n - 1 for n, e in evaluations.items()):
        return Spending(2, 1)
    counts = ", ".join(f"{e} on {n} steps" for n, e in evaluations.items())
    raise Refused(f"{name} cannot sample a flow-matching model here: it spends {counts} evaluations, neither one per "
                  "step nor two per step with one on the last, so solverbench cannot plan its budgets")


def probe(name: str, build: Callable[[], Any], set_grid: Callable[[Any, int], None]) -> Spending:
    """Run the scheduler as ``solve`` will (``build``, ``set_grid(scheduler, steps)``) on a probe problem; its
    spending per step, or ``Refused`` with the reason it cannot sample a flow model (grid, NaN, noise)."""
    evaluations = {}
    for steps in PROBE_STEPS:
        outputs = []
        for seed in (0, 1):  # a scheduler that draws noise gives two different samples
            scheduler = build()
            try:
                set_grid(scheduler, steps)
                if seed == 0:
                    if check_flow_grid(name, scheduler, steps) != steps:
                        raise Refused(f"{name} cannot sample a flow-matching model here: its grid for "
                                      f"num_inference_steps={steps} has another number of steps")
                    evaluations[steps] = len(scheduler.timesteps)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    outputs.append(run_scheduler(scheduler, probe_velocity, probe_state()))
            except Refused:
                raise
            except Exception as err:  # whatever the scheduler raises on a velocity with this config
                raise Refused(f"{name} cannot sample a flow-matching model: sampling a velocity raises "
                              f"{type(err).__name__}: {' '.join(str(err).split())}") from None
        if not torch.isfinite(outputs[0]).all():
            raise Refused(f"{name} cannot sample a flow-matching model: its samples are not finite (NaN or inf after "
                          "its steps)")
        if not torch.equal(outputs[0], outputs[1]):
            raise Refused(f"{name} cannot sample a flow-matching model as an ODE: it draws noise while sampling "
                          "(stochastic), and solverbench compares ODE solvers of the flow")
    return spending_of(name, evaluations)


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


def claimed_order(name: str, config: dict[str, Any]) -> Optional[int]:
    """The global order claimed for a scheduler with its (whole) config; None where none is claimed."""
    if name in ("FlowMatchEulerDiscreteScheduler", "FlowMapEulerDiscreteScheduler"):
        return 1
    if name == "FlowMatchHeunDiscreteScheduler":
        return 2
    if name == "DPMSolverMultistepScheduler":  # the published 3M is second order (solvers/dpm.py)
        return min(int(config["solver_order"]), 2)
    if name == "UniPCMultistepScheduler":  # UniC raises UniP-p's order p by one (solvers/unipc.py), if it runs
        return int(config["solver_order"]) + (0 if config.get("disable_corrector") else 1)
    return None


@register_solver("diffusers")
class DiffusersScheduler(Solver):
    """A diffusers scheduler as it ships (``scheduler=`` its class name, its config as keywords), on a flow model."""

    @classmethod
    def inversion_refusal(cls) -> str:
        return ("a diffusers scheduler samples from noise to data on its own sigmas, as a pipeline does, and "
                "diffusers ships no flow-matching inverse scheduler (docs/inversion.md)")

    def __init__(self, scheduler: str = "FlowMatchEulerDiscreteScheduler", grid: str = "scheduler",
                 mu: Optional[float] = None, **config: Any):
        if grid not in GRIDS:
            raise ValueError(f"diffusers: grid must be 'scheduler' (its own sigmas) or 'plan' (the plan's times), "
                             f"got {grid!r}")
        if mu is not None and (isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu)):
            raise ValueError(f"diffusers: mu must be a number, got {mu!r}")
        try:
            self.setting = Setting(scheduler, dict(config), grid, None if mu is None else float(mu))
        except Refused as why:
            message = str(why)
            if "cannot sample a flow-matching model" in message or "has no scheduler class" in message:
                message += f"; the flow-matching schedulers it runs: {', '.join(supported_schedulers())}"
            raise ValueError(message) from None
        setting = self.setting
        self.stages = setting.spending.stages
        self.partial_stages = (setting.spending.last,) if setting.spending.last != self.stages else ()
        self.last_stages = self.partial_stages  # FlowMatchHeun's last step is always its Euler one: odd budgets only
        self.order = claimed_order(setting.name, setting.resolved)
        self.history_length = max(int(setting.resolved.get("solver_order", 1)), 1)  # a multistep method's past states

    @staticmethod
    def describe_settings() -> str:
        return ("**config: any keyword of the scheduler class's __init__ (shift, use_dynamic_shifting, base_shift, "
                "max_shift, use_karras_sigmas, solver_order, solver_type, algorithm_type, flow_shift, ...)")

    def params(self) -> dict[str, Any]:
        setting = self.setting
        return {"scheduler": setting.name, **setting.given,
                **({"mu": setting.mu} if setting.mu is not None else {}),
                **({"grid": setting.grid} if setting.grid != "scheduler" else {})}

    def row_fields(self) -> dict[str, Any]:
        return {"diffusers_version": diffusers_module().__version__}

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan) -> torch.Tensor:
        setting, steps = self.setting, plan.intervals
        spending = setting.spending.of(steps)
        if tuple(plan.stages) != spending:
            raise ValueError(
                f"{self.label()} spends {setting.spending.stages} NFE per step and {setting.spending.last} on its last "
                f"(to sigma = 0): {sum(spending)} NFE on {steps} steps, so a budget of {plan.nfe} cannot be spent; "
                f"give {sum(spending)} or {sum(setting.spending.of(steps + 1))}")
        times = plan.times.detach()
        if setting.grid == "scheduler":
            if not torch.equal(times, make_time_grid("uniform", steps)):
                shown = ", ".join(f"{t:.4g}" for t in times[:4].tolist()) + (", ..." if len(times) > 4 else "")
                raise ValueError(
                    f"{self.label()} samples on the scheduler's own sigmas (grid='scheduler'), so the plan's time grid "
                    f"[{shown}] (not the uniform one) would be ignored: sample on the uniform schedule, or give "
                    "grid='plan' to hand the plan's times to the scheduler as its sigmas")
            times = None
        elif float(times[-1]) != 0.0:
            raise ValueError(f"{self.label()}: the scheduler ends every grid at sigma = 0, so the plan must end at "
                             f"t = 0, not {float(times[-1]):.4g}")
        with quiet_diffusers():
            scheduler = setting.build()
            setting.set_timesteps(scheduler, steps, times, device=x.device)
            if len(scheduler.timesteps) != plan.nfe:  # the probe measured otherwise: never expected
                raise RuntimeError(f"{self.label()} set {len(scheduler.timesteps)} timesteps for a plan of "
                                   f"{plan.nfe} NFE")
            if x.dtype == torch.float64:
                scheduler.sigmas = scheduler.sigmas.to(torch.float64)  # same values; UniPC then computes in float64
            scheduler.set_begin_index(0)
            sigmas, timesteps = scheduler.sigmas, scheduler.timesteps
            i = 0
            for stages in plan.stages:
                with field.at_step(t_of_sigma(sigmas[i])):  # the step's evaluations belong to it ("step" decision)
                    for _ in range(stages):
                        v = field(x, t_of_sigma(sigmas[i]))
                        x = scheduler.step(v, timesteps[i], x, return_dict=False)[0]
                        i += 1
        return x

    def local_step(self, field, history_times, history_states, t_next):
        raise NoExactHistoryStep(
            f"no exact-history step: {self.label()} runs only along a whole grid ending at sigma = 0 "
            "(set_timesteps appends it), so it cannot take one step from exact states")
