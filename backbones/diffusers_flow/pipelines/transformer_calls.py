"""What a pipeline hands its transformer, recorded call by call: the conditions of its prompts, Flux's distilled
guidance and its latents' token grid.

A scheduler sees only the velocity the pipeline's loop gives it; a solver that conditions on each prompt (the
BA-solver's SideNet, on the prompt's pooled embedding) needs the prompts too.  ``TransformerCalls`` is a forward
pre-hook on the pipeline's transformer that keeps the last calls' conditions (by the names of the prompt sets,
``architecture.conditions``), how many rows they ran on, and, for Flux, the ``guidance`` and the ``img_ids`` (whose
rows and columns are the packed latents' 2x2 patches).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

import torch

from backbones.diffusers_flow.architectures import Architecture

# a condition's name in a prompt set -> the transformer's keyword that takes it (SD3, Flux and Sana alike)
TRANSFORMER_KEYWORDS = {"prompt_embeds": "encoder_hidden_states", "pooled_prompt_embeds": "pooled_projections",
                        "prompt_attention_mask": "encoder_attention_mask"}
KEPT = 4  # calls kept: a step makes one or two (Flux's true CFG)


@dataclass(frozen=True)
class TransformerCall:
    """One call of the transformer: its ``rows`` (the batch), the ``conditions`` by name, Flux's distilled
    ``guidance`` (None where it got none) and the ``(rows, columns)`` of its packed latents' patches (None but for
    Flux)."""

    rows: int
    conditions: dict[str, torch.Tensor]
    guidance: Optional[float]
    patches: Optional[tuple[int, int]]


class TransformerCalls:
    """The calls of ``transformer`` since the last ``take``, recorded by a forward pre-hook until ``remove``."""

    def __init__(self, transformer: torch.nn.Module, architecture: Architecture):
        self.architecture = architecture
        self.calls: deque[TransformerCall] = deque(maxlen=KEPT)
        self.count = 0
        self._handle = transformer.register_forward_pre_hook(self._record, with_kwargs=True)

    def take(self) -> tuple[int, list[TransformerCall]]:
        """How many calls there were since the last ``take``, and the last of them (at most ``KEPT``)."""
        count, calls = self.count, list(self.calls)
        self.count, self.calls = 0, deque(maxlen=KEPT)
        return count, calls

    def remove(self) -> None:
        self._handle.remove()

    def _record(self, module: Any, args: tuple, kwargs: dict) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        conditions = {c.name: kwargs.get(TRANSFORMER_KEYWORDS[c.name]) for c in self.architecture.conditions}
        guidance = kwargs.get("guidance")
        ids = kwargs.get("img_ids")
        patches = None if ids is None else (int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1)
        self.count += 1
        self.calls.append(TransformerCall(int(hidden.shape[0]), conditions,
                                          None if guidance is None else float(guidance.reshape(-1)[0]), patches))
