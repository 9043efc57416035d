"""Prompt sets: the conditions of the ``diffusers`` backbone, as one safetensors file of text embeddings.

A prompt set of P prompts holds, for each conditioning input of its transformer, one tensor with a
row per prompt (SD3: ``prompt_embeds`` (P, L, D) and ``pooled_prompt_embeds`` (P, D'); Flux: the
same; Sana: ``prompt_embeds`` and ``prompt_attention_mask`` (P, L)), and the same inputs of the
negative (or empty) prompt under ``negative_<name>``, with one row.  A sample's label is its
prompt's index (0 .. P - 1); the label P is the negative prompt, the null label of classifier-free
guidance.

Its metadata (safetensors keeps string pairs): ``prompts``, the prompts' texts as a JSON list of P
strings; ``negative_prompt``, the negative prompt's text as a JSON string (where the negative
tensors are held); ``format``: ``FORMAT``; and, where ``encode-prompts`` wrote it, ``pipeline``
(the pipeline class whose ``encode_prompt`` made it) and ``max_sequence_length``.

Files are read with ``safetensors`` (tensors only: no code runs).  A missing or unreadable file, a
missing tensor, rows that disagree with the prompts and a negative tensor of another shape than its
prompts' rows are each refused in one line naming the file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

FORMAT = "solverbench prompt set 1"
NEGATIVE_PREFIX = "negative_"


class PromptSetError(ValueError):
    """A prompt-set file that is missing, unreadable, or does not hold what its transformer needs.

    A ValueError: the file is a bad parameter value, so a grid naming it fails while it is read."""


@dataclass(frozen=True)
class PromptSet:
    """The prompts' texts and their embeddings: ``tensors`` by name, the negative ones under ``negative_<name>``."""

    path: Path
    prompts: tuple[str, ...]
    tensors: Mapping[str, torch.Tensor]
    negative_prompt: Optional[str] = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """P, the number of prompts (the labels 0 .. P - 1)."""
        return len(self.prompts)

    @property
    def has_negative(self) -> bool:
        return any(name.startswith(NEGATIVE_PREFIX) for name in self.tensors)

    def where(self) -> str:
        return f"prompt set {str(self.path)!r}"


def read_prompt_set(path: str | Path) -> PromptSet:
    """The prompt set in ``path`` (tensors on the CPU, in the file's dtypes), its rows checked against its prompts."""
    from safetensors import SafetensorError, safe_open

    path = Path(path).expanduser()
    where = f"prompt set {str(path)!r}"
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise PromptSetError(f"{where}: {what}; give the .safetensors file that encode-prompts writes")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as stored:
            metadata = dict(stored.metadata() or {})
            tensors = {name: stored.get_tensor(name) for name in stored.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise PromptSetError(f"{where} is not a readable safetensors file ({' '.join(str(err).split())})") from None
    prompts = _json_field(metadata, "prompts", where)
    if not (isinstance(prompts, list) and prompts and all(isinstance(p, str) for p in prompts)):
        raise PromptSetError(f"{where}: its metadata 'prompts' must be a JSON list of the prompts' texts (one per "
                             "row), not " + _shown(prompts))
    negative = _json_field(metadata, "negative_prompt", where) if "negative_prompt" in metadata else None
    if negative is not None and not isinstance(negative, str):
        raise PromptSetError(f"{where}: its metadata 'negative_prompt' must be a JSON string, not {_shown(negative)}")
    if not tensors:
        raise PromptSetError(f"{where} holds no tensors")
    prompt_set = PromptSet(path, tuple(prompts), tensors, negative, metadata)
    check_rows(prompt_set)
    return prompt_set


def check_rows(prompt_set: PromptSet) -> None:
    """Every prompt tensor has a row per prompt, every negative tensor one row shaped as its prompts' rows."""
    where, rows = prompt_set.where(), prompt_set.size
    for name, tensor in prompt_set.tensors.items():
        if name.startswith(NEGATIVE_PREFIX):
            own = prompt_set.tensors.get(name.removeprefix(NEGATIVE_PREFIX))
            if own is None:
                raise PromptSetError(f"{where} holds {name} but no {name.removeprefix(NEGATIVE_PREFIX)} of the "
                                     "prompts themselves")
            if tuple(tensor.shape) != (1, *own.shape[1:]):
                raise PromptSetError(f"{where}: {name} has shape {tuple(tensor.shape)}; the negative prompt's is "
                                     f"one row shaped as the prompts' rows, {(1, *own.shape[1:])}")
        elif tensor.dim() == 0 or tensor.shape[0] != rows:
            raise PromptSetError(f"{where}: {name} has shape {tuple(tensor.shape)}, but its metadata names {rows} "
                                 f"prompts: give one row per prompt ({rows}, ...)")
    if prompt_set.has_negative and prompt_set.negative_prompt is None:
        raise PromptSetError(f"{where} holds negative tensors but no 'negative_prompt' text in its metadata")


def write_prompt_set(path: str | Path, prompts: list[str], tensors: Mapping[str, torch.Tensor],
                     negative_prompt: Optional[str] = None, **metadata: Any) -> Path:
    """Write a prompt set: ``tensors`` by name (the negative prompt's under ``negative_<name>``, one row each),
    the texts and ``metadata`` (strings, or values written as JSON) in its metadata; checked as it will be read,
    and written atomically (a half-written file never takes the name)."""
    from safetensors.torch import save_file

    path = Path(path)
    stored = {name: tensor.detach().to("cpu").contiguous() for name, tensor in tensors.items()}
    texts = {"format": FORMAT, "prompts": json.dumps(list(prompts))}
    if negative_prompt is not None:
        texts["negative_prompt"] = json.dumps(negative_prompt)
    texts.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    check_rows(PromptSet(path, tuple(prompts), stored, negative_prompt, texts))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    save_file(stored, str(partial), metadata=texts)
    os.replace(partial, path)
    return path


def _json_field(metadata: Mapping[str, str], key: str, where: str) -> Any:
    if key not in metadata:
        raise PromptSetError(f"{where} has no '{key}' in its metadata (the prompts' texts as JSON); write it with "
                             "encode-prompts or write_prompt_set")
    try:
        return json.loads(metadata[key])
    except ValueError:
        raise PromptSetError(f"{where}: its metadata '{key}' is not JSON: {_shown(metadata[key])}") from None


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
