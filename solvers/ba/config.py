"""SideNet settings: what the SideNet is and how it is trained, in groups, each with its meaning.

``SideNetConfig`` holds them as nested values:

- ``network``: the SideNet's architecture and sizes (``NetworkSettings``);
- ``optimisation``: the optimiser and its schedule, the weight average, label dropout, the seed, the
  ``recipe`` and the checkpoint training starts from (``OptimisationSettings``);
- ``questions``: what the SideNet is trained on, ``chains`` (the paper's chain training, the default),
  ``solves`` (the questions of exact bi-anchor solves, questions.py) or ``both`` (the two losses added);
- ``chains``: chain training, where chains start and how they step (``ChainSettings``);
- ``solves``: solve-question training, the solves asked and how their answers are fitted (``SolveSettings``).

Each setting's meaning sits beside its default (``setting``, setting.py): ``python -m solverbench
train-sidenet`` offers one option per setting with that text, and ``solverbench list ba`` describes
them from it (``settings_description``).  A grid's ``solver_settings: {ba: ...}`` (or the older ``sidenet:``
mapping) and a solver's own params give them nested (``{network: {width: 64}, chains: {chain_length: 8}}``)
or flat (``{width: 64}``): every setting's name says its group.  In Python a setting reads by its flat name
too: ``config.width`` is ``config.network.width``.  With the backbone's identity they key the SideNet
cache (cache.py, whose ``CACHE_VERSION`` is raised when a setting changes meaning).

Two settings are presets that give the others their defaults (a setting given explicitly always wins):

- ``architecture``: ``project`` (this project's SideNets, the default) or ``official`` (the authors' image
  SideNet, sidenet/official.py: width 256, depth 4 counting the attention block, embed_dim 256, 4 heads,
  their plain head; ``OFFICIAL_ARCHITECTURE``).
- ``recipe``: ``project`` (the defaults below, sized for a CPU: lr 1e-3 with a cosine decay, EMA 0.999 with
  warm-up, batch 256, 1200 iterations) or ``official`` (the authors' train_BA_side.py, ``OFFICIAL_RECIPE``: lr
  1e-4 constant, EMA 0.9996 without warm-up, batch 168 as in their README's command, their script's 300,000
  iterations at most, chains on data).  The official recipe also runs the backbone under float16 autocast
  (bfloat16 on a CPU) in the chains, lets a step size be 1e-5 where no room is left and clamps t' to [0, 1].
  Both use K = 8, lambda = 50, 3-point Gauss-Legendre moves, label dropout 0.1, no weight decay and a
  gradient clip of 1.

``questions: solves`` takes the optimisation settings and the solve settings but refuses chain settings
other than their defaults; ``questions: chains`` refuses solve settings other than theirs.

``init_from`` starts the training from a checkpoint's weights instead of a random initialisation: a
chain-trained SideNet fine-tuned on solve questions, say.  The cache key holds the file's SHA-256 in place of
its path (cache.py): a file replaced under the same name trains again, one moved does not.  In a grid, give it
flat in a solver's params, where it is read next to the grid file as ``checkpoint`` is (in ``solver_settings``
it is read next to the grid file too; from Python, from the working directory).
"""
from __future__ import annotations

from dataclasses import Field, asdict, dataclass, fields
from itertools import groupby
from typing import Any, Mapping, Optional

from solvers.ba.setting import (PATH_OR_EMPTY, POSITIVE_INTEGER, at_least, check_fields, check_of, check_value,
                                is_everyday, is_integer, meaning_of, non_negative_integer, one_of, positive_number,
                                setting, within)

ARCHITECTURES = ("project", "official")  # this project's SideNets; the authors' image SideNet
OUTPUT_HEADS = ("gated", "plain", "poly")  # the project SideNet's last layer (sidenet/base.py)
RECIPES = ("project", "official")
QUESTIONS = ("chains", "solves", "both")


@dataclass(frozen=True)
class NetworkSettings:
    """The SideNet's architecture and sizes."""

    width: int = setting(128, "hidden width (MLP) or base channels (image SideNet; the paper: 128-256)",
                         POSITIVE_INTEGER, everyday=True)
    depth: int = setting(3, "residual blocks (official architecture: blocks counting the attention block)",
                         POSITIVE_INTEGER, everyday=True)
    embed_dim: int = setting(128, "size of the sinusoidal embeddings of t and h (even; official architecture: "
                                  "the conditioning width, the sinusoids being 256 wide)", POSITIVE_INTEGER)
    heads: int = setting(4, "attention heads of the image SideNet's middle block", POSITIVE_INTEGER)
    output_head: str = setting("gated", "gated: W u + alpha x + beta v (sidenet/base.py); plain: W u (the paper's); "
                                        "poly: sum_p s (h/s)^p (W_p u + alpha_p x + beta_p v) from a trunk of (t, y) "
                                        "only (one trunk pass per anchor serves every node offset)",
                               one_of(*OUTPUT_HEADS))
    poly_degree: int = setting(3, "degree P of the poly head's polynomial in h (output_head poly only)",
                               POSITIVE_INTEGER)
    architecture: str = setting("project", "project: this project's SideNets; official: the authors' image SideNet "
                                           "(its sizes become width 256, depth 4 counting the attention block, "
                                           "embed_dim 256, plain head, unless given)",
                                one_of(*ARCHITECTURES), everyday=True)

    def __post_init__(self):
        check_fields(self, "SideNet setting")
        if self.embed_dim % 2 and self.architecture == "project":  # the official one's sinusoids are 256 wide
            raise ValueError(f"SideNet setting 'embed_dim' must be even, got {self.embed_dim}")
        if self.output_head != "poly" and self.poly_degree != NetworkSettings.poly_degree:
            raise ValueError(f"SideNet setting 'poly_degree' is for output_head poly, not {self.output_head!r}; "
                             "set output_head: poly or drop poly_degree")
        if self.architecture == "official" and self.output_head != "plain":
            raise ValueError(f"SideNet setting 'output_head' is {self.output_head!r}, but the official architecture "
                             "has the authors' plain head only (norm, SiLU, 3x3 conv); drop output_head or set it "
                             "to plain")

    def build_arguments(self) -> dict[str, Any]:
        """What ``build_sidenet`` takes beside the backbone's shape and labels: the architecture and its sizes
        (the official one has no head to choose; ``poly_degree`` only with the poly head)."""
        if self.architecture == "official":
            return {"architecture": "official", "width": self.width, "depth": self.depth,
                    "embed_dim": self.embed_dim, "heads": self.heads}
        poly = {"poly_degree": self.poly_degree} if self.output_head == "poly" else {}
        return {"width": self.width, "depth": self.depth, "embed_dim": self.embed_dim, "heads": self.heads,
                "output_head": self.output_head, **poly}


@dataclass(frozen=True)
class OptimisationSettings:
    """How the SideNet's weights are fitted, whatever the questions: AdamW, its schedule, the weight average."""

    recipe: str = setting("project", "project: the defaults shown here; official: the authors' train_BA_side.py "
                                     "(lr 1e-4 constant, EMA 0.9996 without warm-up, batch 168, 300000 iterations, "
                                     "data, backbone in float16/bfloat16 autocast) as the defaults of the settings "
                                     "not given", one_of(*RECIPES), everyday=True)
    iterations: int = setting(1200, "training iterations", POSITIVE_INTEGER, everyday=True)
    batch_size: int = setting(256, "chains per iteration (questions solves: exact trajectories, drawn from the bank "
                                   "with solve_bank, which is solved this many at a time; both: as many of each)",
                              POSITIVE_INTEGER)
    lr: float = setting(1e-3, "peak learning rate (> 0)", positive_number())
    lr_schedule: str = setting("cosine", "learning-rate schedule", one_of("constant", "cosine"))
    weight_decay: float = setting(0.0, "AdamW weight decay (>= 0)", at_least(0, "be a non-negative number"))
    grad_clip: float = setting(1.0, "gradient-norm clip (> 0)", positive_number())
    ema_decay: float = setting(0.999, "decay of the weight average that sampling uses, in [0, 1)", within(0.0, 1.0))
    label_dropout: float = setting(0.1, "probability of replacing a label by the null label, in [0, 1)",
                                   within(0.0, 1.0))
    seed: int = setting(0, "seed of initialisation, chains and solves (>= 0)", non_negative_integer(), everyday=True)
    init_from: str = setting("", "a SideNet checkpoint (the same architecture settings) whose EMA weights the "
                                 "training starts from: fine-tuning; its training time counts in this one's "
                                 "(empty: a random initialisation)", PATH_OR_EMPTY)

    def __post_init__(self):
        check_fields(self, "SideNet setting")


@dataclass(frozen=True)
class ChainSettings:
    """Chain training (``questions: chains`` or ``both``): where the chains start and how they step."""

    chain_length: int = setting(8, "K steps per chain (K + 1 backbone calls)", POSITIVE_INTEGER)
    step_rate: float = setting(50.0, "lambda of the truncated exponential step-size law (> 0)", positive_number())
    sim_nodes: int = setting(3, "Gauss-Legendre nodes of the no-grad chain simulation",
                             one_of(1, 2, 3, 4, 5, must="be 1 to 5 Gauss-Legendre nodes"))
    chain_steps: str = setting("sidenet", "sidenet: a chain's next point by the SideNet's quadrature (the paper's); "
                                          "exact: on the backbone's own trajectory (an adaptive solve: distillation "
                                          "targets from the reference solver)", one_of("sidenet", "exact"))
    noise_starts: float = setting(0.0, "share of chains that start at t = 1 from pure noise, where sampling starts "
                                       "(their first step goes toward data), in [0, 1]; the others start at "
                                       "t ~ U(0, 1)", within(0, 1, closed=True))
    data: str = setting("auto", "where chains start: data (backbone.sample_data), noise (data-free), auto: data "
                                "where it exists", one_of("auto", "data", "noise"))
    noise_steps: int = setting(8, "data-free mode: Heun steps that carry noise from t = 1 to a chain's start",
                               POSITIVE_INTEGER)

    def __post_init__(self):
        check_fields(self, "SideNet setting")


@dataclass(frozen=True)
class SolveSettings:
    """Solve-question training (``questions: solves`` or ``both``, questions.py): the exact solves whose questions
    the SideNet answers, and how the answers are fitted."""

    solve_nfe_min: int = setting(5, "the least NFE of the solves whose questions are trained on", POSITIVE_INTEGER)
    solve_nfe_max: int = setting(15, "the largest NFE of those solves (each trajectory's drawn uniformly from "
                                     "solve_nfe_min to solve_nfe_max)", POSITIVE_INTEGER)
    questions_per_solve: int = setting(32, "questions of its solve each exact trajectory answers (intervals, with "
                                           "solve_loss endpoints)", POSITIVE_INTEGER)
    solve_bank: int = setting(0, "0: fresh exact trajectories every iteration; N: N of them solved once before "
                                 "training (with the backbone's velocities at every asked time) and drawn from "
                                 "(questions.SolveBank)", non_negative_integer(" (0: no bank)"))
    solve_guidance: float = setting(1.0, "the CFG scale the exact trajectories are solved under (1: unguided, labels "
                                         "dropped at label_dropout; else each question is asked of the conditional "
                                         "and the unconditional velocity, as a guided solve asks them)",
                                    at_least(0, "be a number >= 0 (1: unguided)"))
    first_interval_weight: float = setting(1.0, "the loss weight (> 0) of the questions of a solve's first interval, "
                                                "from pure noise at t = 1, against 1 for the others",
                                           positive_number(" (1: no weighting)"))
    last_interval_weight: float = setting(1.0, "the same for the questions of a solve's last interval, whose "
                                               "predictor the solve returns uncorrected",
                                          positive_number(" (1: no weighting)"))
    solve_shift: float = setting(1.0, "1: the solves' grids are uniform; s (> 0): time-shifted by s, as schedule "
                                      "{name: shifted, shift: s} samples (train on the grid you sample with)",
                                 positive_number(" (1: uniform grids)"))
    solve_loss: str = setting("nodes", "nodes: each answer fitted to the exact velocity alone; endpoints: per "
                                       "interval the error of the state it builds from its answers (their errors "
                                       "summed with the rule's weights, interval_loss.py)",
                              one_of("nodes", "endpoints"))
    solve_target: str = setting("branches", "under solve_guidance: branches, each branch's answer fitted to its "
                                            "exact velocity; guided, the guided velocity v_u + w (v_c - v_u) the "
                                            "sampler forms from them (with solve_loss endpoints, the state built "
                                            "from the guided answers)", one_of("branches", "guided"))

    def __post_init__(self):
        check_fields(self, "SideNet setting")

    def check_together(self) -> None:
        """What the settings ask of each other, where solve questions are trained on."""
        if self.solve_nfe_min > self.solve_nfe_max:
            raise ValueError(f"SideNet setting 'solve_nfe_min' ({self.solve_nfe_min}) is above 'solve_nfe_max' "
                             f"({self.solve_nfe_max})")
        if self.solve_target == "guided" and self.solve_guidance == 1:
            raise ValueError("SideNet setting solve_target: guided fits the guided velocity, and solve_guidance is 1 "
                             "(unguided); set solve_guidance or drop solve_target")

    @property
    def branches(self) -> int:
        """The velocities each question is asked of: the conditional alone (unguided solves), or with the
        unconditional one under ``solve_guidance``, as a guided bi-anchor solve corrects both before it guides."""
        return 1 if self.solve_guidance == 1 else 2


GROUPS = {"network": NetworkSettings, "optimisation": OptimisationSettings, "chains": ChainSettings,
          "solves": SolveSettings}
GROUP_OF = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}  # a setting's flat name -> group

# What each preset gives the settings not set explicitly ("project": the defaults above).
OFFICIAL_ARCHITECTURE = {"width": 256, "depth": 4, "embed_dim": 256, "heads": 4, "output_head": "plain"}
OFFICIAL_RECIPE = {  # HKUST-LongGroup/BA-solver, train_BA_side.py and the README's training command
    "iterations": 300_000, "batch_size": 168, "chain_length": 8, "step_rate": 50.0, "sim_nodes": 3,
    "label_dropout": 0.1, "lr": 1e-4, "lr_schedule": "constant", "weight_decay": 0.0, "grad_clip": 1.0,
    "ema_decay": 0.9996, "data": "data",
}
PRESETS = {"architecture": {"project": {}, "official": OFFICIAL_ARCHITECTURE},
           "recipe": {"project": {}, "official": OFFICIAL_RECIPE}}


@dataclass(frozen=True, init=False)
class SideNetConfig:
    """Every SideNet setting, checked.  ``SideNetConfig(width=64, chains={"chain_length": 4})`` takes flat names,
    a group as a mapping, or a group as its settings object, which flat names given beside it change (as
    ``dataclasses.replace(config, iterations=10)`` does); ``from_settings`` layers mappings and applies the
    presets.  A setting reads by its flat name too (``config.width``, ``SideNetConfig.width``: its default)."""

    network: NetworkSettings
    optimisation: OptimisationSettings
    questions: str = setting("chains", "chains: the paper's chain training; solves: the questions of exact bi-anchor "
                                       "solves on the uniform grid at NFE solve_nfe_min to solve_nfe_max "
                                       "(distillation from the reference solver; no chain settings); both: the two "
                                       "losses added", one_of(*QUESTIONS), everyday=True)
    chains: ChainSettings
    solves: SolveSettings

    def __init__(self, **settings: Any):
        flat = flat_settings(settings, "SideNet settings")
        for group, cls in GROUPS.items():
            object.__setattr__(self, group, cls(**{f.name: as_declared(f, flat[f.name])
                                                   for f in fields(cls) if f.name in flat}))
        questions = flat.get("questions", SETTING_FIELDS["questions"].default)
        check_value(SETTING_FIELDS["questions"], questions, "SideNet setting")
        object.__setattr__(self, "questions", questions)
        self.check_questions()

    def check_questions(self) -> None:
        """What the questions use: ``chains`` refuses solve settings other than their defaults, ``solves`` chain
        settings; solve questions refuse the authors' recipe, which trains on chains."""
        if self.questions == "chains":
            given = changed(self.solves)
            if given:
                raise ValueError(f"SideNet setting(s) {', '.join(map(repr, given))} are for questions: solves or "
                                 "both, not chains; set questions or drop them")
            return
        self.solves.check_together()
        if self.optimisation.recipe == "official":
            raise ValueError(f"SideNet setting questions: {self.questions} is not the official recipe, which trains "
                             f"on chains; drop recipe: official or questions: {self.questions}")
        given = sorted(changed(self.chains)) if self.questions == "solves" else []
        if given:
            raise ValueError(f"SideNet setting(s) {', '.join(map(repr, given))} are for chain training, which "
                             "questions: solves does not use; drop them")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every setting's flat name, group by group."""
        return tuple(SETTING_FIELDS)

    @classmethod
    def from_settings(cls, *layers: Mapping[str, Any], where: str = "sidenet") -> "SideNetConfig":
        """Defaults, then each mapping in turn (a grid's family settings, then a solver's own; each flat, nested
        by group or both); the ``architecture`` and ``recipe`` presets fill the settings none of them gives."""
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(flat_settings(layer, where))
        for preset, values in PRESETS.items():
            chosen = merged.get(preset, SETTING_FIELDS[preset].default)
            if chosen not in values:
                raise ValueError(f"{where}: SideNet setting {preset!r} must be one of {', '.join(values)}, "
                                 f"got {chosen!r}")
            merged = {**values[chosen], **merged}
        return cls(**merged)

    def nested(self) -> dict[str, Any]:
        """Every setting, nested by group: what a checkpoint records and what keys the cache."""
        return asdict(self)

    def as_dict(self) -> dict[str, Any]:
        """Every setting by its flat name (``SideNetConfig(**config.as_dict()) == config``)."""
        return {name: getattr(self, name) for name in SETTING_FIELDS}

    @property
    def uses_solve_bank(self) -> bool:
        """Whether its solve questions come from a bank solved once (``solve_bank`` trajectories)."""
        return self.questions != "chains" and self.solves.solve_bank > 0


def setting_fields() -> list[tuple[Optional[str], Field]]:
    """Every setting's field in order, with the group it belongs to (None: the top level)."""
    return [(f.name, member) if f.name in GROUPS else (None, f) for f in fields(SideNetConfig)
            for member in (fields(GROUPS[f.name]) if f.name in GROUPS else (f,))]


SETTING_FIELDS: dict[str, Field] = {f.name: f for _, f in setting_fields()}  # flat name -> its field


class FlatName:
    """A grouped setting read by its flat name: on a config, its group's value; on the class, its default."""

    def __init__(self, group: str, f: Field):
        self.group, self.field = group, f

    def __get__(self, config: Optional[SideNetConfig], owner: type = SideNetConfig) -> Any:
        if config is None:
            return self.field.default
        return getattr(getattr(config, self.group), self.field.name)


for _group, _cls in GROUPS.items():
    for _field in fields(_cls):
        setattr(SideNetConfig, _field.name, FlatName(_group, _field))


def as_declared(f: Field, value: Any) -> Any:
    """A whole number given for a float setting, as a float (``lr: 1`` is ``lr: 1.0``)."""
    return float(value) if f.type == "float" and is_integer(value) else value


def changed(group: Any) -> list[str]:
    """The settings of ``group`` (a settings object) that differ from their defaults, in order."""
    return [f.name for f in fields(group) if getattr(group, f.name) != f.default]


def unknown_settings(layer: Mapping[str, Any]) -> list[str]:
    """The keys of ``layer`` that name no setting (``group.name`` for those under a group)."""
    unknown = []
    for key, value in layer.items():
        if key in GROUPS and isinstance(value, Mapping):
            unknown += [f"{key}.{name}" for name in value if name not in SETTING_FIELDS]
        elif key not in GROUPS and key not in SETTING_FIELDS:
            unknown.append(key)
    return unknown


def flat_settings(layer: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``layer``'s settings by flat name: flat names, groups as mappings of theirs, or groups as settings objects
    (which flat names given beside them change).  An unknown name, one under another group than its own, or one
    given both flat and under its group is one line naming it."""
    unknown = unknown_settings(layer)
    if unknown:
        raise ValueError(f"{where}: unknown SideNet setting(s) {', '.join(map(repr, unknown))}; known settings: "
                         f"{', '.join(SETTING_FIELDS)} (flat, or under their group: {', '.join(GROUPS)})")
    whole: dict[str, Any] = {}  # from groups given as settings objects
    nested: dict[str, Any] = {}
    for key, value in layer.items():
        if key not in GROUPS:
            continue
        if isinstance(value, GROUPS[key]):
            whole.update({f.name: getattr(value, f.name) for f in fields(value)})
            continue
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: SideNet settings group {key!r} must be a mapping of its settings "
                             f"({', '.join(f.name for f in fields(GROUPS[key]))}), got {value!r}")
        for name, v in value.items():
            if GROUP_OF.get(name) != key:
                home = GROUP_OF.get(name) or "the top level"
                raise ValueError(f"{where}: SideNet setting {name!r} belongs under {home}, not under {key}")
            nested[name] = v
    flat = {k: v for k, v in layer.items() if k not in GROUPS}
    twice = [name for name in flat if name in nested]
    if twice:
        raise ValueError(f"{where}: SideNet setting(s) {', '.join(map(repr, twice))} given twice, flat and under "
                         f"{', '.join(sorted({GROUP_OF[n] for n in twice}))}; keep one")
    return {**whole, **nested, **flat}


def settings_description(full: bool = False, family: str = "ba") -> str:
    """What the SideNet settings are, for ``solverbench list``: the everyday ones with their defaults and how many
    more there are; with ``full``, every one, group by group, with its default and meaning."""
    where = (f"SideNet settings (solver_settings: {{{family}: ...}} in a grid, or the solver's params; flat, or "
             f"nested by group: {', '.join(GROUPS)})")
    entries = setting_fields()
    if not full:
        everyday = [f for _, f in entries if is_everyday(f)]
        return (f"{where}: " + ", ".join(f"{f.name}={f.default!r}" for f in everyday)
                + f"; {len(entries) - len(everyday)} more SideNet settings: solverbench list {family} --all")
    lines = [f"{where}:"]
    for group, members in groupby(entries, key=lambda entry: entry[0]):
        indent = "    " if group else "  "
        if group:
            lines.append(f"  {group}:")
        lines += [f"{indent}{f.name}={f.default!r}: {meaning_of(f)}{choices_of(f)}" for _, f in members]
    return "\n".join(lines)


def choices_of(f: Field) -> str:
    choices = check_of(f).choices
    return f" [one of: {', '.join(map(str, choices))}]" if choices else ""
