"""Train a SideNet once per (backbone identity, SideNet settings) and reuse it from disk.

The file is ``<cache_dir>/sidenet/<hash>.pt`` with the hash of ``CACHE_VERSION``, the backbone's identity
and every SideNet setting, nested by group (architecture, training settings, seed; ``init_from`` as the
SHA-256 of the file it names, not its path), so a sweep with many ``ba*`` solver variants trains once, and a
later sweep, or a changed setting, does the right thing.  A SideNet trained on a solve bank keeps the bank's
batches under ``<cache_dir>/solve_banks/`` (bank_store.py, the folder ``train-sidenet --bank-dir`` is given in
the docs), so the attempts that share a bank, a chain of fine-tunings above all, solve it once.  A cached file
that cannot be used (torn, foreign, for another backbone or other settings) is moved aside, named in one line,
and trained again (``solverbench.cache_entry``); under torchrun rank 0 does so before the other ranks read it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from solverbench.backbone import backbone_identity
from solverbench.cache_entry import UnfitEntry, read_entry
from solverbench.distributed import World, world
from solverbench.hashing import canonical_json, file_sha256, spec_hash
from solvers.ba.checkpoint import LoadedSideNet, load_checkpoint
from solvers.ba.config import SideNetConfig
from solvers.ba.solverbench_format import save_checkpoint
from solvers.ba.training import train_sidenet

# Raised when a SideNet trained from the same settings would come out otherwise (a setting changing
# meaning, a training step changing what it computes): every cached SideNet is then trained again.
CACHE_VERSION = 2


def cache_key(backbone: Any, config: SideNetConfig) -> dict[str, Any]:
    """What names a cached SideNet: the cache version, the backbone's identity and every setting, nested."""
    settings = config.nested()
    start = config.optimisation.init_from
    if start and Path(start).is_file():  # the file's bytes, wherever it lies
        settings["optimisation"]["init_from"] = "sha256:" + file_sha256(start)
    return {"version": CACHE_VERSION, "backbone": backbone_identity(backbone), "sidenet": settings}


def cache_path(cache_dir: str | Path, backbone: Any, config: SideNetConfig) -> Path:
    return Path(cache_dir) / "sidenet" / f"{spec_hash(cache_key(backbone, config))}.pt"


def train_checkpoint(backbone: Any, config: SideNetConfig, path: str | Path, *, device: str = "cpu",
                     progress: bool = True, ranks: World = World(),
                     bank_dir: Optional[str | Path] = None) -> LoadedSideNet:
    """Train and write a checkpoint at ``path``; returns it as loaded (EMA weights).  With ``ranks``
    (torchrun's processes, all calling this) the training is data-parallel and rank 0 writes.  ``bank_dir``:
    where a solve bank's batches are kept (``train_sidenet``)."""
    raw, ema, stats = train_sidenet(backbone, config, device=device, progress=progress, ranks=ranks,
                                    bank_dir=bank_dir)
    if ranks.main:
        save_checkpoint(path, raw=raw, ema=ema, config=config, stats=stats.as_dict(), backbone=backbone)
    ranks.barrier()
    return load_checkpoint(path, backbone, device=device)


def cached_sidenet(backbone: Any, config: SideNetConfig, cache_dir: Optional[str | Path], *, device: str = "cpu",
                   progress: bool = True) -> LoadedSideNet:
    """The cached SideNet for ``(backbone, config)``, trained and stored first if there is none;
    without a ``cache_dir`` it is trained and kept in memory only."""
    if cache_dir is None:
        raw, ema, stats = train_sidenet(backbone, config, device=device, progress=progress)
        return LoadedSideNet(ema, config, stats.as_dict(), backbone_identity(backbone), path=None)
    path = cache_path(cache_dir, backbone, config)
    cached = read_entry(path, "cached SideNet", lambda p: read_cached(p, backbone, config, device), mend=world().main)
    if cached is not None:
        return cached
    return train_checkpoint(backbone, config, path, device=device, progress=progress,
                            bank_dir=bank_dir(cache_dir, config))


def read_cached(path: Path, backbone: Any, config: SideNetConfig, device: str) -> LoadedSideNet:
    """The SideNet a cache file holds, checked: trained for ``backbone`` with ``config``'s settings (those
    of ``init_from`` aside: the cache's name holds the file's digest, the checkpoint the path it was read at)."""
    loaded = load_checkpoint(path, backbone, device=device)
    if settings_of(loaded.config) != settings_of(config):
        raise UnfitEntry("was trained with other SideNet settings than its name says")
    return loaded


def settings_of(config: SideNetConfig) -> str:
    settings = config.nested()
    del settings["optimisation"]["init_from"]
    return canonical_json(settings)


def bank_dir(cache_dir: str | Path, config: SideNetConfig) -> Optional[Path]:
    """Where a cached SideNet's solve bank is kept: ``<cache_dir>/solve_banks``; None for one trained without a bank."""
    return Path(cache_dir) / "solve_banks" if config.uses_solve_bank else None
