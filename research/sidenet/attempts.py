"""The SideNet training attempts of attempts.yaml, and the evaluation setting each backbone's attempts are measured in.

An attempt is a set of SideNet settings (the keys of a grid's ``solver_settings: {ba: ...}``) or a shipped
checkpoint, optionally started from another SideNet (``init``) and sampled on another time grid (``schedule``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional, Sequence

import yaml

from research.sidenet import CHECKPOINTS
from solverbench.backbone import resolve_backbone
from solvers.ba.cache import cache_path
from solvers.ba.config import SideNetConfig

TABLE = Path(__file__).resolve().parent / "attempts.yaml"
# per backbone, the grid settings its attempts are measured in: configs/ba_gmm.yaml's and configs/digits.yaml's
SETTINGS = {
    "gmm64": {"backbones": [{"name": "gmm", "params": {"preset": "gmm64"}}], "guidance": {"scale": 1.0},
              "num_samples": 1024, "batch_size": 1024, "reference": {"rtol": 1e-9, "atol": 1e-9}},
    "digits": {"backbones": ["digits"], "guidance": {"scale": 2.0}, "num_samples": 500, "batch_size": 500,
               "reference": {"rtol": 1e-5, "atol": 1e-5}},
}


@dataclass(frozen=True)
class Attempt:
    backbone: str  # a key of SETTINGS
    name: str
    why: str  # what the evidence said to try
    settings: dict = field(default_factory=dict)  # SideNet settings; the project's defaults for the rest
    checkpoint: Optional[str] = None  # a shipped file instead of settings
    schedule: Optional[str | dict] = None  # a learned time grid (ld3, gits) or a fixed one's spec ({name: shifted,
    # shift: s}) in place of the uniform one
    init: Optional[str] = None  # a shipped file the training starts from (init_from), or the name of an earlier
    # attempt of the same backbone whose trained SideNet (its cache entry under the results directory) it continues

    def params(self, results: str = "results") -> dict:
        """The ``ba`` solver's parameters: the shipped checkpoint, or the SideNet settings (``init_from`` resolved;
        an earlier attempt's SideNet is read from ``results``' cache)."""
        if self.checkpoint:
            return {"checkpoint": str(CHECKPOINTS / self.checkpoint)}
        if not self.init:
            return dict(self.settings)
        before = self.continues()
        if before is None:
            return {**self.settings, "init_from": str(CHECKPOINTS / self.init)}
        return {**self.settings, "init_from": str(before.sidenet_path(results))}

    def continues(self) -> Optional["Attempt"]:
        """The earlier attempt whose SideNet this one's training starts from (None: a shipped file, or no init)."""
        if not self.init or (CHECKPOINTS / self.init).is_file():
            return None
        before = next((a for a in ATTEMPTS if a.backbone == self.backbone and a.name == self.init), None)
        if before is None:
            raise ValueError(f"attempt {self.name!r}: init {self.init!r} is neither a file under {CHECKPOINTS} nor "
                             f"an attempt on {self.backbone}")
        return before

    def sidenet_path(self, results: str = "results", params: Optional[dict] = None) -> Path:
        """Where its trained SideNet is: the shipped file, or the cache entry a run trains for its backbone
        (``params``: its ``params(results)``, where the caller has them)."""
        if self.checkpoint:
            return CHECKPOINTS / self.checkpoint
        config = SideNetConfig.from_settings(params or self.params(results))
        return cache_path(Path(results).absolute() / ".cache", settings_backbone(self.backbone), config)

    def cached(self, results: str) -> bool:
        """Whether its SideNet is on disk (and, for one that continues an earlier attempt, that attempt's)."""
        params = self.params(results)
        start = params.get("init_from")
        return (start is None or Path(start).is_file()) and self.sidenet_path(results, params).is_file()


@functools.lru_cache(maxsize=None)
def settings_backbone(backbone: str):
    """The backbone the attempts of ``backbone`` (a key of SETTINGS) run on."""
    spec = SETTINGS[backbone]["backbones"][0]
    return resolve_backbone(spec) if isinstance(spec, str) else resolve_backbone(spec["name"], **spec["params"])


def load_attempts(path: Path = TABLE) -> tuple[Attempt, ...]:
    """The attempts listed in ``path``, in its order; a ValueError names the first entry that is not one."""
    entries = yaml.safe_load(path.read_text()) or []
    known = {f.name for f in fields(Attempt)}
    attempts = []
    for k, entry in enumerate(entries):
        where = f"{path}, entry {k + 1}"
        if not isinstance(entry, dict) or not {"backbone", "name", "why"} <= set(entry):
            raise ValueError(f"{where}: an attempt needs backbone, name and why")
        if set(entry) - known:
            raise ValueError(f"{where}: unknown key {sorted(set(entry) - known)[0]!r} (known: {sorted(known)})")
        if entry["backbone"] not in SETTINGS:
            raise ValueError(f"{where}: backbone {entry['backbone']!r} is not one of {sorted(SETTINGS)}")
        attempts.append(Attempt(**entry))
    seen = set()
    for a in attempts:
        if (a.backbone, a.name) in seen:
            raise ValueError(f"{path}: two attempts on {a.backbone} named {a.name!r}")
        seen.add((a.backbone, a.name))
    return tuple(attempts)


ATTEMPTS = load_attempts()


def attempts_named(names: list[str], attempts: Sequence[Attempt] = ()) -> list[Attempt]:
    """The attempts called ``names`` (among ``attempts``, by default the table's), in that order; a ValueError names
    the first that is not one."""
    by_name = {a.name: a for a in attempts or ATTEMPTS}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"no attempt named {unknown[0]!r} in {TABLE.name}")
    return [by_name[name] for name in names]
