"""A solve bank's batches on disk (``train-sidenet --bank-dir DIR``), so that a stopped training resumes its
bank where it stopped and trainings that differ only in the SideNet or the optimiser share one.

A bank (questions.py, ``SolveBank``) is solved ``batch_size`` trajectories at a time from the training's
random stream.  Each solved batch is one file, ``DIR/<key>/batch_<k>_<rows>.pt``, holding its states, labels and
velocities, the backbone calls and seconds it took, and the stream's state after it.  ``<key>`` hashes what
decides the batches: the backbone's identity, the stream's state where the bank starts (so the seed and the
rank), the batch size, the NFE range and grid shift, the guidance scale (and the label dropout where
unguided), the exact solve's tolerance, the device type and the default dtype.  Batch k with ``rows`` trajectories follows k full
batches, so a bank of 512 and one of 1024 share their first batches.  A batch read back sets the stream to
where it left it, so a bank read from disk trains to the same bits as one solved in place.

Files are written whole (to a temporary name, then renamed) and read with ``weights_only=True``; a file that
cannot be used (torn, foreign, written for another bank, not of its rows) is moved aside, named in one line, and
solved again (``solverbench.cache_entry``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from solverbench.backbone import backbone_identity
from solverbench.cache_entry import UnfitEntry, load_tensors, read_entry, save_atomically
from solverbench.hashing import spec_hash
from solvers.ba.chains import EXACT_TOLERANCE
from solvers.ba.config import SideNetConfig

BANK_FORMAT = 1


@dataclass
class SolvedBatch:
    states: torch.Tensor  # [time, rows, ...]
    labels: Optional[torch.Tensor]
    velocities: torch.Tensor  # [branch, time, rows, ...]
    calls: int  # batched backbone calls the solve and the velocities took
    seconds: float  # how long they took when solved


def bank_key(backbone: Any, config: SideNetConfig, generator: torch.Generator, device: str) -> dict[str, Any]:
    """What decides a bank's batches (see the module's docstring)."""
    stream = hashlib.sha256(generator.get_state().numpy().tobytes()).hexdigest()[:16]
    return {"format": BANK_FORMAT, "backbone": backbone_identity(backbone), "stream": stream,
            "batch_size": config.optimisation.batch_size, "solve_nfe_min": config.solves.solve_nfe_min,
            "solve_nfe_max": config.solves.solve_nfe_max, "solve_shift": config.solves.solve_shift,
            "solve_guidance": config.solves.solve_guidance,
            "label_dropout": config.optimisation.label_dropout if config.solves.solve_guidance == 1 else None,
            "tolerance": EXACT_TOLERANCE, "device": torch.device(device).type,
            "dtype": str(torch.get_default_dtype())}


class BankStore:
    """The batches of one bank under ``root``: ``read`` what an earlier run solved, ``write`` what this one solves."""

    def __init__(self, root: str | Path, backbone: Any, config: SideNetConfig, generator: torch.Generator,
                 device: str):
        self.key = bank_key(backbone, config, generator, device)
        self.folder = Path(root) / spec_hash(self.key)
        self.device = device

    def path(self, index: int, rows: int) -> Path:
        return self.folder / f"batch_{index:05d}_{rows}.pt"

    def read(self, index: int, rows: int, generator: torch.Generator) -> Optional[SolvedBatch]:
        """Batch ``index`` of ``rows`` trajectories if it is on disk (then ``generator`` is set to where its solve
        left the stream), else None."""
        saved = read_entry(self.path(index, rows), "solve bank batch", self.read_saved)
        if saved is None:
            return None
        generator.set_state(saved["generator"])
        labels = saved["labels"]
        return SolvedBatch(saved["states"].to(self.device), None if labels is None else labels.to(self.device),
                           saved["velocities"].to(self.device), int(saved["calls"]), float(saved["seconds"]))

    def read_saved(self, path: Path) -> dict[str, Any]:
        """A batch file's contents, checked: written for this bank, with the rows its name says."""
        saved = load_tensors(path, ("key", "states", "labels", "velocities", "calls", "seconds", "generator"))
        if saved["key"] != self.key:
            raise UnfitEntry("was written for another bank (its key differs)")
        rows = int(path.stem.rsplit("_", 1)[1])
        states, velocities = saved["states"], saved["velocities"]
        if not (isinstance(states, torch.Tensor) and isinstance(velocities, torch.Tensor) and states.dim() >= 2
                and states.shape[1] == rows and velocities.dim() >= 3 and velocities.shape[2] == rows):
            raise UnfitEntry(f"does not hold {rows} trajectories")
        return saved

    def write(self, index: int, batch: SolvedBatch, generator: torch.Generator) -> None:
        """Keep ``batch`` (solved in place) with the stream's state after it."""
        save_atomically({"key": self.key, "states": batch.states.cpu(),
                         "labels": None if batch.labels is None else batch.labels.cpu(),
                         "velocities": batch.velocities.cpu(), "calls": batch.calls, "seconds": batch.seconds,
                         "generator": generator.get_state()}, self.path(index, batch.states.shape[1]))
