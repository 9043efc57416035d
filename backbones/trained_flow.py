"""Backbones whose velocity network this project trains: weights from a checkpoint, training on demand.

A subclass names its ``TrainingConfig`` (a dataclass; its fields are the options of
``python -m solverbench train-backbone NAME``), builds its network from that config
(``build_network``) and draws its training data (``training_data``).  ``train_backbone`` runs the
flow-matching loop of ``backbones.flow_training`` and writes a checkpoint
``{"state_dict": EMA weights, "config": the training config}``; the backbone loads such a
file strictly (see ``backbones.checkpoints``) and its identity carries the file's SHA-256,
so caches keyed by the backbone never mix two sets of weights.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backbones.checkpoints import CheckpointError, extract_state_dict, fit_state_dict, read_checkpoint, save_checkpoint
from backbones.flow_training import DataSampler, FlowTrainingConfig, train_flow
from solverbench import Backbone
from solverbench.hashing import file_sha256


class TrainedFlowBackbone(Backbone):
    """A velocity network ``net(x, t, y)`` loaded from a checkpoint that ``train_backbone`` wrote."""

    TrainingConfig: type[FlowTrainingConfig] = FlowTrainingConfig
    path_params = ("checkpoint",)
    label_dropout: float = 0.0  # probability of training on the null label (class-conditional flows)

    def __init__(self, checkpoint: str | Path):
        super().__init__()
        path = Path(checkpoint)
        stored = read_checkpoint(path)
        self.config = self.config_from(stored, path)
        self.net = self.build_network(self.config)
        fit_state_dict(self.net, extract_state_dict(stored, path, key="state_dict"), path,
                       hint=f"Is it a {self.registered_name} checkpoint written by "
                            f"`python -m solverbench train-backbone {self.registered_name}`?")
        self.net.eval().requires_grad_(False)
        self.checkpoint = path

    # -- what a subclass provides --------------------------------------------------------
    @classmethod
    def build_network(cls, config: FlowTrainingConfig) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def training_data(cls, config: FlowTrainingConfig) -> DataSampler:
        """``draw(n, generator) -> (x0, y)`` for training (``y`` None when unconditional)."""
        raise NotImplementedError

    # -- loading and training ------------------------------------------------------------
    @classmethod
    def config_from(cls, stored: Any, path: Path) -> FlowTrainingConfig:
        raw = stored.get("config") if isinstance(stored, dict) else None
        names = {f.name for f in dataclasses.fields(cls.TrainingConfig)}
        if not isinstance(raw, dict) or set(raw) != names:
            got = sorted(raw) if isinstance(raw, dict) else "none"
            raise CheckpointError(f"checkpoint file {str(path)!r} has no {cls.__name__} training config: "
                                  f"expected the fields {sorted(names)}, got {got}")
        return cls.TrainingConfig(**raw)

    @classmethod
    def train_backbone(cls, config: FlowTrainingConfig, out: str | Path, progress: bool = True) -> Path:
        """Train a network with ``config`` and write its checkpoint to ``out`` (not ``nn.Module.train``,
        which switches training mode)."""
        torch.manual_seed(config.seed)  # the layers' initialisation
        net = cls.build_network(config)
        ema, _ = train_flow(net, cls.training_data(config), config, null_label=cls.null_label,
                            label_dropout=cls.label_dropout, progress=progress, desc=f"train {cls.registered_name}")
        return save_checkpoint(out, ema.state_dict(), dataclasses.asdict(config))

    def identity(self) -> dict[str, Any]:
        return {"class": self.registered_name, "checkpoint_sha256": file_sha256(self.checkpoint)}
