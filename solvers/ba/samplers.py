"""The registered BA solvers: ``ba`` (bi-anchor), ``ba-single`` (single-anchor), ``ba-oracle``.

Every one spends exactly one NFE per interval.  ``ba`` and ``ba-single`` need a SideNet,
obtained in ``prepare(backbone, context)``: loaded from ``checkpoint=PATH`` if given (a
checkpoint of this project, or an authors' SideNet file, read as ``architecture: official``;
``architecture`` is the one setting a checkpoint takes, and then must match the file), else
trained once and cached under the context's cache folder keyed by the backbone's identity
and the SideNet settings (the family's grid settings, ``solver_settings: {ba: ...}``, or
the older top-level ``sidenet:``, overridden by the solver's own params; each flat or nested
by group, config.py).  ``describe_settings`` says what they are for ``solverbench list``.
A solver that was never prepared refuses to sample (training silently inside ``sample()``
would hide minutes of work); ``sidenet: off`` needs no preparation.  While a grid is read
(``check_backbone``) the checkpoint is loaded against each backbone the solver runs on, and kept
for ``prepare``; where the SideNet is to be trained, its ``init_from`` is checked the same way.
A relative ``init_from`` among the family's grid settings is read next to the grid file, as the
solver's own parameters are.  ``ba-oracle`` puts
exact velocities where the SideNet's would be: an analysis tool, never a sampler.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from solverbench import register_solver
from solverbench.backbone import backbone_identity
from solverbench.field import VelocityField
from solverbench.hashing import canonical_json
from solverbench.plan import Plan
from solverbench.solver import PrepareContext, Solver, SolverCheckError
from solvers.ba.cache import cached_sidenet
from solvers.ba.checkpoint import LoadedSideNet, SideNetCheckpointError, load_checkpoint
from solvers.ba.config import SideNetConfig, flat_settings, settings_description, unknown_settings
from solvers.ba.node_velocities import AnchorVelocities, NodeVelocities, OracleVelocities, SideNetVelocities
from solvers.ba.quadrature import BI_ANCHOR_FAMILIES, QuadratureRule, bi_anchor_rule, gauss_legendre
from solvers.ba.schemes import bi_anchor, bi_anchor_local_step, single_anchor
from solvers.ba.sidenet import sidenet_for
from solvers.ba.stepper import BiAnchorStepper
from solvers.ba.training import check_solve_guidance, read_init_from, training_seconds


class SideNetNotPrepared(RuntimeError):
    """A SideNet solver asked to sample before ``prepare`` gave it a SideNet."""


def parse_switch(value: Any) -> bool:
    """``sidenet: on/off`` (YAML may already have turned them into booleans)."""
    if isinstance(value, bool):
        return value
    if value in ("on", "off"):
        return value == "on"
    raise ValueError(f"sidenet must be on or off (true/false), got {value!r}")


def bi_anchor_params(rule: Optional[str], nodes: int, a: Optional[float]) -> tuple[QuadratureRule, dict[str, Any]]:
    """The rule of ``rule``/``nodes``/``a`` and the params that name it (``a`` replaces ``rule``)."""
    if a is not None and rule not in (None, "custom"):
        raise ValueError(f"give either rule ({', '.join(BI_ANCHOR_FAMILIES)}) or a custom a, not both")
    family = None if a is not None else (rule or "lobatto")
    quadrature = bi_anchor_rule(family, nodes, a)
    return quadrature, ({"a": float(a)} if a is not None else {"rule": family}) | {"nodes": nodes}


def sidenet_counters(velocities: Optional[NodeVelocities]) -> dict[str, float]:
    """The ``sidenet_calls`` and ``sidenet_time`` (seconds) columns of a BA solver's results."""
    if velocities is None:
        return {"sidenet_calls": 0, "sidenet_time": 0.0}
    return {"sidenet_calls": velocities.calls, "sidenet_time": velocities.seconds}


def parameter_count(module: Any) -> Optional[int]:
    """Trainable-parameter count of a backbone; None where it has none (e.g. an analytic one)."""
    count = sum(p.numel() for p in module.parameters()) if isinstance(module, torch.nn.Module) else 0
    return count or None


class SideNetSolver(Solver):
    """A BA scheme whose node velocities come from a SideNet (or from the anchors, sidenet off)."""

    path_params = ("checkpoint", "init_from")  # init_from: a SideNet setting given (flat) in a solver's params
    family = "ba"  # the grid's solver_settings: {ba: {...}} are the SideNet settings
    invertible = True  # the mirrored scheme: the SideNet is asked in path time (node_velocities, docs/inversion.md)
    legacy_settings_keys = ("sidenet",)  # the top-level key they had before solver_settings

    def __init__(self, *, sidenet: Any = True, checkpoint: Optional[str] = None, **settings: Any):
        self.sidenet_on = parse_switch(sidenet)
        unknown = unknown_settings(settings)
        if unknown:
            raise TypeError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; SideNet settings are: "
                            + ", ".join(SideNetConfig.keys()) + " (flat, or nested by group)")
        where = f"{self.registered_name} params"
        settings = flat_settings(settings, where)
        SideNetConfig.from_settings(settings, where=where)  # bad values fail here
        if not self.sidenet_on and (checkpoint or settings):
            raise ValueError("sidenet=off takes neither a checkpoint nor SideNet settings")
        if checkpoint and set(settings) - {"architecture"}:
            raise ValueError("a checkpoint fixes the SideNet; drop the settings "
                             f"{', '.join(sorted(set(settings) - {'architecture'}))} (architecture alone may stay: "
                             "it is checked against the file)")
        self.checkpoint = checkpoint
        self.overrides = settings  # by flat name
        self.loaded: Optional[LoadedSideNet] = None
        self.backbone_parameters: Optional[int] = None
        self.prepared_for: Optional[str] = None
        self.velocities: Optional[NodeVelocities] = None if self.sidenet_on else AnchorVelocities()
        self.checked: dict[str, LoadedSideNet] = {}  # checkpoint loaded by check_backbone, per backbone identity

    @classmethod
    def describe_settings(cls, full: bool = False) -> str:
        """What ``**settings`` take (``solverbench list``, beside the constructor's own parameters: the scheme's,
        ``sidenet`` and ``checkpoint``): the everyday SideNet settings and how to see the rest; with ``full``,
        every one, grouped, with its default and meaning.  The same text for ``ba`` and ``ba-single``."""
        return settings_description(full, cls.family)

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Refuse bad grid-level SideNet settings while the grid is read (ValueError)."""
        SideNetConfig.from_settings(settings, {} if self.checkpoint else self.overrides, where="sidenet settings")

    # -- preparation --------------------------------------------------------------
    def check_backbone(self, backbone: Any, context: PrepareContext) -> None:
        """Load ``checkpoint`` against ``backbone`` (kept for ``prepare``); or, where the SideNet is to be trained,
        check ``init_from`` (readable, made for this backbone, of the settings' architecture) and that guided
        solve questions have a null label to guide with.  Failures are ``SolverCheckError`` naming the key."""
        if not self.sidenet_on:
            return
        if self.checkpoint:
            try:
                loaded = load_checkpoint(Path(self.checkpoint), backbone,
                                         architecture=self.overrides.get("architecture"))
            except SideNetCheckpointError as err:
                raise SolverCheckError(str(err), "params.checkpoint") from None
            except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a file of this format, but damaged
                raise SolverCheckError(f"SideNet checkpoint {self.checkpoint!r} cannot be loaded: "
                                       f"{type(err).__name__}: {' '.join(str(err).split())}", "params.checkpoint") from None
            self.checked[canonical_json(backbone_identity(backbone))] = loaded
            return
        config = self.sidenet_config(context)
        try:
            check_solve_guidance(config, backbone)
        except ValueError as err:
            raise SolverCheckError(str(err), "params.solve_guidance" if "solve_guidance" in self.overrides
                                   else "settings.solve_guidance") from None
        if config.optimisation.init_from:
            try:
                with torch.random.fork_rng(devices=[]):  # building the SideNet draws its initial weights
                    wanted = sidenet_for(backbone, config.network).spec
                read_init_from(backbone, config, wanted)
            except (FileNotFoundError, KeyError, TypeError, ValueError, RuntimeError) as err:
                message = str(err) if isinstance(err, (FileNotFoundError, ValueError)) else \
                    f"SideNet setting 'init_from': {config.optimisation.init_from} cannot be loaded: " \
                    f"{type(err).__name__}: {err}"
                raise SolverCheckError(" ".join(message.split()), "params.init_from" if "init_from" in self.overrides
                                       else "settings.init_from") from None

    def sidenet_config(self, context: PrepareContext) -> SideNetConfig:
        """The SideNet settings: the family's grid settings (a relative ``init_from`` read next to the grid file),
        then the solver's own."""
        settings = flat_settings(context.settings, f"{self.label()}: SideNet settings")
        start = settings.get("init_from")
        if isinstance(start, str) and start and context.grid_dir is not None and not Path(start).is_absolute():
            settings["init_from"] = str(Path(context.grid_dir) / start)
        return SideNetConfig.from_settings(settings, self.overrides, where=f"{self.label()}: SideNet settings")

    def prepare(self, backbone: Any, context: PrepareContext = PrepareContext()) -> None:
        """Load ``checkpoint`` (a grid resolved it next to the grid file; the Python API reads it
        from the working directory; what ``check_backbone`` loaded is reused), or train or load the
        cached SideNet for ``backbone``."""
        self.backbone_parameters = parameter_count(backbone)
        self.prepared_for = canonical_json(backbone_identity(backbone))
        if not self.sidenet_on:
            return
        if self.checkpoint:
            checked = self.checked.pop(self.prepared_for, None)
            if checked is not None:
                checked.sidenet = checked.sidenet.to(context.device)
            self.loaded = checked or load_checkpoint(Path(self.checkpoint), backbone, device=context.device,
                                                     architecture=self.overrides.get("architecture"))
        else:
            self.loaded = cached_sidenet(backbone, self.sidenet_config(context), context.cache_dir,
                                         device=context.device, progress=context.progress)
        self.velocities = SideNetVelocities(self.loaded.sidenet)

    def node_velocities(self, field: VelocityField) -> NodeVelocities:
        if self.velocities is None:
            raise SideNetNotPrepared(
                f"{self.label()} has no SideNet: call solver.prepare(backbone, PrepareContext(cache_dir=...)) first (it trains "
                "one, or loads it from the cache or from checkpoint=PATH), or use sidenet=off")
        if self.prepared_for is not None and self.prepared_for != canonical_json(backbone_identity(field.backbone)):
            raise SideNetNotPrepared(f"{self.label()} was prepared for the backbone {self.prepared_for}, "
                                     f"not for {canonical_json(backbone_identity(field.backbone))}")
        return self.velocities

    def use_precision(self, precision: Any) -> None:
        """The SideNet under the run's autocast, compiled where it asks (solverbench.precision)."""
        if isinstance(self.velocities, SideNetVelocities):
            self.velocities.use_precision(precision)

    # -- reporting ----------------------------------------------------------------
    def counters(self) -> dict[str, float]:
        """SideNet calls (batched questions, not NFE) and the seconds spent in them."""
        return sidenet_counters(self.velocities)

    def params(self) -> dict[str, Any]:
        extra: dict[str, Any] = dict(self.overrides)
        if not self.sidenet_on:
            extra["sidenet"] = "off"
        if self.checkpoint:
            extra["checkpoint"] = str(self.checkpoint)
        return {**self.scheme_params, **extra}

    def row_fields(self) -> dict[str, Any]:
        count = self.loaded.sidenet.parameter_count() if self.loaded is not None else 0
        stats = self.loaded.stats if self.loaded is not None else {}
        seconds = training_seconds(stats)  # with the bank batches read from disk and the checkpoint started from
        return {
            "train_seconds": seconds,  # the training cost columns every trained sampler reports
            "trainable_params": count if self.loaded is not None else None,
            "sidenet_params": count,
            "sidenet_param_ratio": count / self.backbone_parameters if self.backbone_parameters else None,
            "sidenet_train_seconds": seconds,
            "sidenet_iterations": stats.get("iterations"),
            "sidenet_batch_size": stats.get("batch_size"),
            "sidenet_final_loss": stats.get("final_loss"),
            "sidenet_architecture": self.loaded.config.network.architecture if self.loaded is not None else None,
            "sidenet_recipe": stats.get("recipe"),  # None for an authors' file (it does not say)
            "sidenet_data_mode": stats.get("data_mode"),  # data, or noise: data-free chains
            "sidenet_checkpoint": str(self.loaded.path) if self.loaded is not None and self.loaded.path else None,
        }


@register_solver("ba")
class BiAnchor(SideNetSolver):
    """BA-solver: bi-anchor quadrature (Lobatto/Simpson) with SideNet node velocities; 1 NFE per interval."""

    differentiable_times = True  # times that carry gradients reach the SideNet and the quadrature as tensors
    embedded_error = True  # predictor (B3) minus corrector (B6) of every inner interval (solvers/ba/stepper.py)

    def __init__(self, rule: Optional[str] = None, nodes: int = 2, a: Optional[float] = None, **kwargs: Any):
        self.rule, self.scheme_params = bi_anchor_params(rule, nodes, a)
        super().__init__(**kwargs)
        # SideNet off: m = 0 and m = 2 both become the Heun-like trapezoid (order 2); m = 1 weighs v1 by 5/6.
        self.order = None if self.sidenet_on else (1 if nodes == 1 else 2)

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan):
        return bi_anchor(field, self.node_velocities(field), self.rule, x, plan.times)

    def stepper(self, field: VelocityField, x: torch.Tensor, t: float) -> BiAnchorStepper:
        """The scheme an interval at a time, each inner interval's predictor minus corrector its estimate."""
        return BiAnchorStepper.start(field, self.node_velocities(field), self.rule, x, t)

    def local_step(self, field, history_times, history_states, t_next):
        """A mid-run interval, corrector included (a one-interval solve would only predict)."""
        return bi_anchor_local_step(field, self.node_velocities(field), self.rule, history_states[-1],
                                    float(history_times[-1]), float(t_next))


@register_solver("ba-single")
class SingleAnchor(SideNetSolver):
    """Single-anchor BA: SideNet velocities at K Gauss-Legendre nodes from one anchor; 1 NFE per interval."""

    differentiable_times = True

    def __init__(self, nodes: int = 3, **kwargs: Any):
        self.rule = gauss_legendre(nodes)
        self.scheme_params = {"nodes": nodes}
        super().__init__(**kwargs)
        self.order = None if self.sidenet_on else 1  # SideNet off: Euler

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan):
        return single_anchor(field, self.node_velocities(field), self.rule, x, plan.times)


@register_solver("ba-oracle")
class Oracle(Solver):
    """Analysis only: the BA schemes with exact node velocities (the scheme's error floor)."""

    analysis_only = True
    invertible = True  # exact node velocities from a solve in path time (docs/inversion.md)
    SCHEMES = ("bi", "single")

    def __init__(self, scheme: str = "bi", rule: Optional[str] = None, nodes: Optional[int] = None,
                 a: Optional[float] = None, rtol: float = 1e-10, atol: float = 1e-10):
        if scheme not in self.SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(self.SCHEMES)}, got {scheme!r}")
        self.scheme = scheme
        if scheme == "bi":
            self.rule, scheme_params = bi_anchor_params(rule, 2 if nodes is None else nodes, a)
        else:
            if rule is not None or a is not None:
                raise ValueError("the single-anchor scheme uses Gauss-Legendre nodes: give nodes, not rule or a")
            self.rule, scheme_params = gauss_legendre(3 if nodes is None else nodes), {"nodes": nodes or 3}
        self.order = self.rule.degree + 1  # the quadrature's order with exact node velocities
        self._params = {"scheme": scheme, **scheme_params}
        self.velocities = OracleVelocities(rtol, atol)
        self.tolerances = {"rtol": float(rtol), "atol": float(atol)}

    def counters(self) -> dict[str, float]:
        """Exact-velocity solves (in place of SideNet calls) and their seconds."""
        return sidenet_counters(self.velocities)

    def params(self) -> dict[str, Any]:
        return self._params | self.tolerances

    def label(self) -> str:
        return super().label() + " [oracle: analysis only]"

    def solve(self, field: VelocityField, x: torch.Tensor, plan: Plan):
        scheme = bi_anchor if self.scheme == "bi" else single_anchor
        return scheme(field, self.velocities, self.rule, x, plan.times)

    def local_step(self, field, history_times, history_states, t_next):
        if self.scheme == "single":
            return super().local_step(field, history_times, history_states, t_next)
        return bi_anchor_local_step(field, self.velocities, self.rule, history_states[-1],
                                    float(history_times[-1]), float(t_next))
