"""SideNet settings: architecture and chain-training knobs, validated, in one flat mapping.

The same keys serve a grid's ``solver_settings: {ba: ...}`` (or the older ``sidenet:``
mapping), per-solver overrides in a grid's solver params, and the options of
``python -m solverbench train-sidenet``.  Together with the backbone's identity they key
the SideNet cache.

Two of them are presets that give the other knobs their defaults (a knob given explicitly
always wins):

- ``architecture``: ``project`` (this project's SideNets, the default) or ``official`` (the
  authors' image SideNet, ``sidenet/official.py``: width 256, depth 4 counting the attention
  block, embed_dim 256, 4 heads, their plain head).
- ``recipe``: ``project`` (the defaults below, sized for a CPU: lr 1e-3 with a cosine
  decay, EMA 0.999 with warm-up, batch 256, 1200 iterations) or ``official`` (the authors'
  train_BA_side.py, ``OFFICIAL_RECIPE``: lr 1e-4 constant, EMA 0.9996 without warm-up, batch
  168 as in their README's command, their script's 300,000 iterations at most, chains on
  data).  The official recipe also runs the backbone under float16 autocast (bfloat16 on a
  CPU) in the chains, lets a step size be 1e-5 where no room is left and clamps t' to [0, 1].
  Both use K = 8, lambda = 50, 3-point Gauss-Legendre moves, label dropout 0.1, no weight
  decay and a gradient clip of 1.

``questions`` picks what the SideNet is trained on: ``chains`` (the paper's chain training,
the default), ``solves`` (``questions_per_solve`` questions of an exact bi-anchor solve at an NFE
from ``solve_nfe_min`` to ``solve_nfe_max`` per trajectory, questions.py), which takes the optimiser
knobs but none of the chain knobs, or ``both`` (the two losses added, each on ``batch_size``).
With either, ``solve_bank`` solves that many trajectories once instead of fresh ones every iteration,
and ``solve_guidance`` solves them under classifier-free guidance, asking both branches;
``first_interval_weight`` and ``last_interval_weight`` weight the loss of the questions of a solve's first and
last interval, and ``solve_shift`` asks the questions of time-shifted grids instead of uniform ones.
``solve_loss: endpoints`` fits, per interval, the error of the state the interval builds from the answers
(interval_loss.py) instead of each answer's.  ``solve_target: guided`` fits, under ``solve_guidance``, the guided
velocity the sampler forms from the two branches' answers instead of each branch's answer.

``init_from`` starts the training from a checkpoint's weights instead of a random initialisation: a
chain-trained SideNet fine-tuned on solve questions, say.  The cache key holds the file's SHA-256 in place of its
path (cache.py): a file replaced under the same name trains again, one moved does not.  In a grid, give it in a solver's params,
where it is read next to the grid file as ``checkpoint`` is (in ``solver_settings`` it is read from the working
directory).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from solvers.ba.sidenet import ARCHITECTURES
from solvers.ba.sidenet.base import OUTPUT_HEADS

DATA_MODES = ("auto", "data", "noise")
CHAIN_STEPS = ("sidenet", "exact")
QUESTIONS = ("chains", "solves", "both")
SOLVE_LOSSES = ("nodes", "endpoints")
SOLVE_TARGETS = ("branches", "guided")
SOLVE_KNOBS = ("solve_nfe_min", "solve_nfe_max", "questions_per_solve", "solve_bank", "solve_guidance",
               "first_interval_weight", "last_interval_weight", "solve_shift", "solve_loss",
               "solve_target")  # refused with questions: chains
# The chain knobs: what ``questions: solves`` does not use, refused there at other values than their defaults.
CHAIN_KNOBS = ("chain_length", "step_rate", "sim_nodes", "chain_steps", "noise_starts", "data", "noise_steps")
LR_SCHEDULES = ("constant", "cosine")
RECIPES = ("project", "official")

# What each preset gives the knobs not set explicitly ("project": the dataclass defaults).
OFFICIAL_ARCHITECTURE = {"width": 256, "depth": 4, "embed_dim": 256, "heads": 4, "output_head": "plain"}
OFFICIAL_RECIPE = {  # HKUST-LongGroup/BA-solver, train_BA_side.py and the README's training command
    "iterations": 300_000, "batch_size": 168, "chain_length": 8, "step_rate": 50.0, "sim_nodes": 3,
    "label_dropout": 0.1, "lr": 1e-4, "lr_schedule": "constant", "weight_decay": 0.0, "grad_clip": 1.0,
    "ema_decay": 0.9996, "data": "data",
}
PRESETS = {"architecture": {"project": {}, "official": OFFICIAL_ARCHITECTURE},
           "recipe": {"project": {}, "official": OFFICIAL_RECIPE}}
# Settings added after SideNets were cached: left out of ``as_dict`` at these values, so the
# cache keys of the settings that existed before them stay what they were.
LATER_SETTINGS = {"architecture": "project", "recipe": "project", "poly_degree": 3, "chain_steps": "sidenet",
                  "noise_starts": 0.0, "questions": "chains", "solve_nfe_min": 5, "solve_nfe_max": 15,
                  "questions_per_solve": 32, "solve_bank": 0, "solve_guidance": 1.0,
                  "first_interval_weight": 1.0, "last_interval_weight": 1.0, "solve_shift": 1.0, "init_from": "",
                  "solve_loss": "nodes", "solve_target": "branches"}


@dataclass(frozen=True)
class SideNetConfig:
    # architecture
    width: int = 128  # hidden width (MLP) or base channels (image; the paper: 128-256)
    depth: int = 3  # residual blocks
    embed_dim: int = 128  # sinusoidal embedding size of t and h
    heads: int = 4  # attention heads of the image SideNet's middle block
    output_head: str = "gated"  # gated: W u + alpha x + beta v (sidenet/base.py); plain: W u (the paper's);
    # poly: sum_p s (h/s)^p (W_p u + alpha_p x + beta_p v), a trunk of (t, y) only, one pass per anchor
    poly_degree: int = 3  # P of the poly head (output_head: poly only)
    architecture: str = "project"  # project: this project's SideNets; official: the authors' image SideNet
    # chain training
    recipe: str = "project"  # project: the knobs' defaults below; official: the authors' (OFFICIAL_RECIPE)
    iterations: int = 1200
    batch_size: int = 256
    chain_length: int = 8  # K steps per chain (K + 1 backbone calls)
    step_rate: float = 50.0  # lambda of the truncated exponential step-size law
    sim_nodes: int = 3  # Gauss-Legendre nodes of the no-grad chain simulation
    chain_steps: str = "sidenet"  # sidenet: x' by the SideNet's quadrature (the paper's chains); exact: x' on
    # the backbone's own trajectory, an adaptive solve (distillation targets from the reference solver)
    noise_starts: float = 0.0  # share of chains that start at t = 1 from pure noise, where every sampling
    # trajectory starts (their first step goes toward data); the others start at t ~ U(0, 1)
    questions: str = "chains"  # chains: the paper's chain training; solves: the questions of exact uniform-grid
    # bi-anchor solves at NFE solve_nfe_min to solve_nfe_max, answered exactly (questions.py); both: the two losses
    solve_nfe_min: int = 5  # questions: solves or both; each trajectory's NFE drawn uniformly in [min, max]
    solve_nfe_max: int = 15
    solve_shift: float = 1.0  # questions: solves or both; 1: the solves' grids are uniform; s: time-shifted by s,
    # as schedule: {name: shifted, shift: s} samples (train on the grid you sample with)
    questions_per_solve: int = 32  # questions: solves or both; questions each exact trajectory answers (intervals,
    # with solve_loss: endpoints)
    solve_loss: str = "nodes"  # questions: solves or both; nodes: each answer regressed on the exact velocity alone;
    # endpoints: per interval, the sum of its answers' errors weighted as the interval's state weighs them
    # (interval_loss.py)
    solve_target: str = "branches"  # questions: solves or both, under solve_guidance; branches: each branch's answer
    # fitted to its exact velocity; guided: the guided combination the sampler uses, v_u + w (v_c - v_u), fitted to
    # the exact one (with solve_loss: endpoints, the state built from the guided answers)
    solve_bank: int = 0  # questions: solves or both; 0: fresh exact trajectories every iteration; N: N of them
    # solved once before training, each iteration drawing batch_size from them (questions.SolveBank)
    solve_guidance: float = 1.0  # questions: solves or both; the CFG scale the trajectories are solved under
    # (1: unguided, labels dropped at label_dropout; else guided, each question asked of both branches)
    first_interval_weight: float = 1.0  # questions: solves or both; the loss weight of the questions of a solve's
    # first interval (from pure noise at t = 1) against 1 for the others (the loss a weighted mean)
    last_interval_weight: float = 1.0  # questions: solves or both; the same for the questions of a solve's last
    # interval (its forward probe toward t = 0, whose predictor a solve returns uncorrected)
    label_dropout: float = 0.1  # probability of replacing a label by the null label
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    data: str = "auto"  # data: backbone.sample_data; noise: chains from noise; auto: data where it exists
    noise_steps: int = 8  # data-free mode: Heun steps that carry noise from t = 1 to the chain's start
    seed: int = 0
    init_from: str = ""  # "": a random initialisation; a SideNet checkpoint of the same architecture settings: its
    # EMA weights are where the training starts (fine-tuning), and its training time counts in this one's

    def __post_init__(self):
        positive_ints = ("width", "depth", "embed_dim", "heads", "poly_degree", "iterations", "batch_size",
                         "chain_length", "noise_steps", "solve_nfe_min", "solve_nfe_max", "questions_per_solve")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SideNet setting {name!r} must be a positive integer, got {value!r}")
        if self.embed_dim % 2 and self.architecture == "project":  # the official one's sinusoids are 256 wide
            raise ValueError(f"SideNet setting 'embed_dim' must be even, got {self.embed_dim}")
        for name in ("step_rate", "lr", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"SideNet setting {name!r} must be a positive number, got {value!r}")
        for name, lo, hi in (("label_dropout", 0.0, 1.0), ("ema_decay", 0.0, 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not lo <= value < hi:
                raise ValueError(f"SideNet setting {name!r} must lie in [{lo}, {hi}), got {value!r}")
        if not isinstance(self.noise_starts, (int, float)) or isinstance(self.noise_starts, bool) \
                or not 0 <= self.noise_starts <= 1:
            raise ValueError(f"SideNet setting 'noise_starts' must lie in [0, 1], got {self.noise_starts!r}")
        if not isinstance(self.solve_bank, int) or isinstance(self.solve_bank, bool) or self.solve_bank < 0:
            raise ValueError(f"SideNet setting 'solve_bank' must be a non-negative integer (0: no bank), "
                             f"got {self.solve_bank!r}")
        if not isinstance(self.solve_guidance, (int, float)) or isinstance(self.solve_guidance, bool) \
                or not self.solve_guidance >= 0:
            raise ValueError(f"SideNet setting 'solve_guidance' must be a number >= 0 (1: unguided), "
                             f"got {self.solve_guidance!r}")
        for name in ("first_interval_weight", "last_interval_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"SideNet setting {name!r} must be a positive number (1: no weighting), got {value!r}")
        if not isinstance(self.solve_shift, (int, float)) or isinstance(self.solve_shift, bool) \
                or not self.solve_shift > 0:
            raise ValueError(f"SideNet setting 'solve_shift' must be a positive number (1: uniform grids), "
                             f"got {self.solve_shift!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"SideNet setting 'weight_decay' must be a non-negative number, got {self.weight_decay!r}")
        if self.sim_nodes not in range(1, 6):
            raise ValueError(f"SideNet setting 'sim_nodes' must be 1 to 5 Gauss-Legendre nodes, got {self.sim_nodes!r}")
        if self.chain_steps not in CHAIN_STEPS:
            raise ValueError(f"SideNet setting 'chain_steps' must be one of {', '.join(CHAIN_STEPS)}, "
                             f"got {self.chain_steps!r}")
        if self.solve_loss not in SOLVE_LOSSES:
            raise ValueError(f"SideNet setting 'solve_loss' must be one of {', '.join(SOLVE_LOSSES)}, "
                             f"got {self.solve_loss!r}")
        if self.questions not in QUESTIONS:
            raise ValueError(f"SideNet setting 'questions' must be one of {', '.join(QUESTIONS)}, got {self.questions!r}")
        if self.questions != "chains":
            self.check_solve_questions()
        else:
            given = [k for k in SOLVE_KNOBS if getattr(self, k) != LATER_SETTINGS[k]]
            if given:
                raise ValueError(f"SideNet setting(s) {', '.join(map(repr, given))} are for questions: solves or "
                                 "both, not chains; set questions or drop them")
        if self.data not in DATA_MODES:
            raise ValueError(f"SideNet setting 'data' must be one of {', '.join(DATA_MODES)}, got {self.data!r}")
        if self.output_head not in OUTPUT_HEADS:
            raise ValueError(
                f"SideNet setting 'output_head' must be one of {', '.join(OUTPUT_HEADS)}, got {self.output_head!r}")
        if self.output_head != "poly" and self.poly_degree != LATER_SETTINGS["poly_degree"]:
            raise ValueError(f"SideNet setting 'poly_degree' is for output_head poly, not {self.output_head!r}; "
                             "set output_head: poly or drop poly_degree")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"SideNet setting 'lr_schedule' must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        for name, allowed in (("architecture", ARCHITECTURES), ("recipe", RECIPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"SideNet setting {name!r} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.architecture == "official" and self.output_head != "plain":
            raise ValueError(f"SideNet setting 'output_head' is {self.output_head!r}, but the official architecture "
                             "has the authors' plain head only (norm, SiLU, 3x3 conv); drop output_head or set it "
                             "to plain")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SideNet setting 'seed' must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.init_from, str):
            raise ValueError(f"SideNet setting 'init_from' must be the path of a SideNet checkpoint (or empty), "
                             f"got {self.init_from!r}")

    def check_solve_questions(self) -> None:
        """``questions: solves`` or ``both``: an NFE range and not the authors' (chain) recipe; ``solves``: no
        chain knobs."""
        if self.solve_nfe_min > self.solve_nfe_max:
            raise ValueError(f"SideNet setting 'solve_nfe_min' ({self.solve_nfe_min}) is above 'solve_nfe_max' "
                             f"({self.solve_nfe_max})")
        if self.recipe == "official":
            raise ValueError(f"SideNet setting questions: {self.questions} is not the official recipe, which trains "
                             f"on chains; drop recipe: official or questions: {self.questions}")
        if self.solve_target not in SOLVE_TARGETS:
            raise ValueError(f"SideNet setting 'solve_target' must be one of {', '.join(SOLVE_TARGETS)}, "
                             f"got {self.solve_target!r}")
        if self.solve_target == "guided" and self.solve_guidance == 1:
            raise ValueError("SideNet setting solve_target: guided fits the guided velocity, and solve_guidance is 1 "
                             "(unguided); set solve_guidance or drop solve_target")
        if self.questions == "both":
            return
        defaults = {f.name: f.default for f in fields(self)}
        chain_knobs = sorted(k for k in CHAIN_KNOBS if getattr(self, k) != defaults[k])
        if chain_knobs:
            raise ValueError(f"SideNet setting(s) {', '.join(map(repr, chain_knobs))} are for chain training, which "
                             "questions: solves does not use; drop them")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_settings(cls, *layers: Mapping[str, Any], where: str = "sidenet") -> "SideNetConfig":
        """Defaults, then each mapping in turn (a grid's family settings, then a solver's
        overrides); the ``architecture`` and ``recipe`` presets fill the knobs none of them gives."""
        merged: dict[str, Any] = {}
        for layer in layers:
            unknown = sorted(set(layer) - set(cls.keys()))
            if unknown:
                raise ValueError(f"{where}: unknown SideNet setting(s) {', '.join(map(repr, unknown))}; "
                                 f"known settings: {', '.join(cls.keys())}")
            merged.update(layer)
        for preset, values in PRESETS.items():
            chosen = merged.get(preset, LATER_SETTINGS[preset])
            if chosen not in values:
                raise ValueError(f"{where}: SideNet setting {preset!r} must be one of {', '.join(values)}, "
                                 f"got {chosen!r}")
            merged = {**values[chosen], **merged}
        floats = {f.name for f in fields(cls) if f.type == "float"}
        merged = {k: float(v) if k in floats and isinstance(v, int) and not isinstance(v, bool) else v
                  for k, v in merged.items()}
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        """Every setting, but those of ``LATER_SETTINGS`` only where they differ from their default."""
        return {k: v for k, v in asdict(self).items() if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}

    @property
    def uses_solve_bank(self) -> bool:
        """Whether its solve questions come from a bank solved once (``solve_bank`` trajectories)."""
        return self.questions != "chains" and self.solve_bank > 0

    @property
    def solve_branches(self) -> int:
        """The velocities each solve question is asked of: the conditional alone (unguided solves), or with the
        unconditional one under ``solve_guidance``, as a guided bi-anchor solve corrects both before it guides."""
        return 1 if self.solve_guidance == 1 else 2

    @property
    def network(self) -> dict[str, Any]:
        """What ``sidenet_for`` builds the SideNet from: its architecture and sizes."""
        if self.architecture == "official":
            return {"architecture": "official", "width": self.width, "depth": self.depth,
                    "embed_dim": self.embed_dim, "heads": self.heads}
        poly = {"poly_degree": self.poly_degree} if self.output_head == "poly" else {}
        return {"width": self.width, "depth": self.depth, "embed_dim": self.embed_dim, "heads": self.heads,
                "output_head": self.output_head, **poly}
